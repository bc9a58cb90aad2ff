"""Pure rules: statuses, calendars, detection, windows, cases, the attention policy. No I/O, no Airflow."""
