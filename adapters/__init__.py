"""The edges: embedded servers, Redis bus, metrics and health, MEXC and paper execution."""
