"""The soak: thousands of jobs on three competing hosts under a schedule of faults, then
checks that nothing was lost or duplicated (docs/soak.md)."""
