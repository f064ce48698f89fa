"""The SQL side: the tasks table, its engine, schema migrations and row transitions."""
