"""The repositories of the unit of work (meldbot.storage.uow), one per file; each implements its Protocol in
meldbot.core.ports."""
