"""`python -m lastmile_airflow.migrate`: migrate the history database named by the Connection
`lastmile_history` (else LASTMILE_DB_URL): the explicit step a deployment runs once before its
components start (compose's airflow-init). Tasks and the api-server only check the revision."""

from __future__ import annotations

import logging


def main() -> None:
    from lastmile.store.db import prepare
    from lastmile.store.migrate import shipped_head
    from lastmile_airflow.connections import airflow_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prepare(airflow_settings().db_url)
    print(f"history database at migration {shipped_head()}")


if __name__ == "__main__":
    main()
