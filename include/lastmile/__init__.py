"""lastmile: catch delivery exceptions before the customer does, and tell them honestly."""
