"""lorapilot's Textual app: screens and widgets over the engine. Never imports torch."""
