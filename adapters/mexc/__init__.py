"""MEXC USDT-M futures: WebSocket protocol, market-data feed, local test server and demo tape."""
