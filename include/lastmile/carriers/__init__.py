"""Carrier tracking: vendor HTTP clients (EasyPost, AfterShip), their payloads parsed into our scans."""
