"""The core: the domain, matching, the calendar and clock, the chat types, texts, the configuration model
and the ports (Protocols) that storage implements. Imports nothing of meldbot outside the core."""
