"""The service layer: turn handling, the AF desk, intake and notifying, the outbox and deliveries, reminders,
retention and monitoring. Uses the core and the dialogs; reaches storage and platforms only through ports."""
