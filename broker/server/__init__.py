"""asyncio glue: the connection protocol, listeners and the server lifecycle."""
