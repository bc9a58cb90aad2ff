"""The exception history: schema, migrations, the upsert, locks and the queries the steps share."""
