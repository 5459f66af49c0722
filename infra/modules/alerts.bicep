// Metric alerts: Azure OpenAI throttling (429s) and server errors, and failed app requests.
// An action group is created only when an e-mail address is given; without it the alerts
// still fire and show in the portal. A monthly cost budget on the resource group mails its own
// address at 80% of the amount spent and at 100% forecast; no address, no budget. The budget
// says that the month costs too much; GET /api/usage says which team spent it.
param name string
param location string = 'global'
param tags object = {}

param openAiId string
param appInsightsId string
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
