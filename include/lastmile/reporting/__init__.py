"""What people read: the run summary, the KPI report, data-quality checks."""
