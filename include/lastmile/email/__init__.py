"""Customer e-mail: which message a case owes, rendering, transports (file, SendGrid), provider events."""
