"""Airflow glue for lastmile: turns a task's context into the domain's `as_of` and runs a step."""
