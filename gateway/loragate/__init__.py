"""Loragate: the asyncio gateway and full peer manager."""
