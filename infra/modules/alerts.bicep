// Metric alerts: Azure OpenAI throttling (429s) and server errors, and failed app requests.
// A log search alert on the app's own metrics (issue 25) fires per deployment when the share of
// upstream requests answered 429 passes a threshold: the account's 429 count cannot say which
// deployment is short of quota once spill-over moves calls between backends.
// An action group is created only when an e-mail address is given; without it the alerts
// still fire and show in the portal. A monthly cost budget on the resource group mails its own
// address at 80% of the amount spent and at 100% forecast; no address, no budget. The budget
// says that the month costs too much; GET /api/usage says which team spent it.
param name string
param location string = 'global'
param tags object = {}

param openAiId string
param appInsightsId string
@description('Log Analytics workspace behind Application Insights: the 429-share alert queries its AppMetrics table.')
param workspaceId string
@description('Region of the log search alert rule (a region, unlike the metric alerts\' global).')
param ruleLocation string
@description('E-mail address notified by the alerts. Empty: no action group.')
param alertEmailAddress string = ''

@description('Monthly budget for the resource group, in the billing currency.')
@minValue(1)
param budgetAmount int = 100
@description('E-mail address for budget notifications. Empty: no budget.')
param budgetAlertEmail string = ''
@description('First day of the budget (yyyy-MM-dd, the first of a month), set once (BUDGET_START_DATE): Azure refuses to change it on an existing budget.')
param budgetStartDate string

param throttledRequestsThreshold int = 10
param serverErrorsThreshold int = 5
param failedRequestsThreshold int = 10
@description('429-share alert: fires when more than this percentage of a deployment\'s upstream requests in the window were throttled.')
@minValue(1)
@maxValue(100)
param throttledSharePercent int = 5
@description('429-share alert: a deployment with fewer upstream requests in the window is not judged.')
@minValue(1)
param throttledShareMinRequests int = 20

var hasActionGroup = !empty(alertEmailAddress)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasActionGroup) {
  name: 'ag-${name}'
  location: location
  tags: tags
  properties: {
    groupShortName: take('aoai${uniqueString(name)}', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'oncall'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = hasActionGroup ? [
  {
    actionGroupId: actionGroup.id
  }
] : []

resource openAiThrottling 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${name}-aoai-throttling'
  location: location
  tags: tags
  properties: {
    description: 'Azure OpenAI answered 429 (rate limited) more often than the threshold.'
    severity: 2
    enabled: true
    scopes: [
      openAiId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'throttled'
          metricNamespace: 'Microsoft.CognitiveServices/accounts'
          metricName: 'AzureOpenAIRequests'
          dimensions: [
            {
              name: 'StatusCode'
              operator: 'Include'
              values: [
                '429'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: throttledRequestsThreshold
          timeAggregation: 'Total'
        }
      ]
    }
    actions: actions
  }
}

resource openAiErrors 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${name}-aoai-errors'
  location: location
  tags: tags
  properties: {
    description: 'Azure OpenAI returned server errors (5xx).'
    severity: 1
    enabled: true
    scopes: [
      openAiId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'serverErrors'
          metricNamespace: 'Microsoft.CognitiveServices/accounts'
          metricName: 'ServerErrors'
          operator: 'GreaterThan'
          threshold: serverErrorsThreshold
          timeAggregation: 'Total'
        }
      ]
    }
    actions: actions
  }
}

resource appFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${name}-app-failures'
  location: location
  tags: tags
  properties: {
    description: 'The function app failed requests.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'failedRequests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: failedRequestsThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    actions: actions
  }
}

// Throttled share per deployment over the window, from app.upstream.requests (a counter sent as
// deltas: Sum is the number of requests in the export interval). Metric and attribute names are
// shared/telemetry/names.py's; tests/infra/telemetry_checks.py holds the query to them.
var throttledShareQuery = 'AppMetrics | where Name == "app.upstream.requests" | extend deployment = tostring(Properties["gen_ai.request.model"]), outcome = tostring(Properties["app.outcome"]) | summarize throttled = sumif(Sum, outcome == "throttled"), requests = sum(Sum) by deployment | where requests >= ${throttledShareMinRequests} | extend throttledPercent = 100.0 * throttled / requests'

// No identity and no role assignment: the rule reads the one workspace in its scope, and no key
// is involved. One alert per deployment (the dimension), resolved when the share falls back.
resource throttledShare 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${name}-app-throttled-share'
  location: ruleLocation
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Azure OpenAI 429 share per deployment (${name})'
    description: 'More than ${throttledSharePercent}% of the upstream requests to a deployment were answered 429 (throttled) in 15 minutes.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: throttledShareQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'throttledPercent'
          dimensions: [
            {
              name: 'deployment'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: throttledSharePercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: hasActionGroup ? [
        actionGroup.id
      ] : []
    }
  }
}

resource budget 'Microsoft.Consumption/budgets@2023-11-01' = if (!empty(budgetAlertEmail)) {
  name: 'budget-${name}'
  properties: {
    category: 'Cost'
    amount: budgetAmount
    timeGrain: 'Monthly'
    timePeriod: {
      startDate: '${budgetStartDate}T00:00:00Z'
    }
    notifications: {
      actualOver80Percent: {
        enabled: true
        operator: 'GreaterThan'
        threshold: 80
        thresholdType: 'Actual'
        contactEmails: [
          budgetAlertEmail
        ]
      }
      forecastOver100Percent: {
        enabled: true
        operator: 'GreaterThan'
        threshold: 100
        thresholdType: 'Forecasted'
        contactEmails: [
          budgetAlertEmail
        ]
      }
    }
  }
}

output actionGroupId string = hasActionGroup ? actionGroup.id : ''
