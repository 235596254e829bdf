"""storyboard: compile YAML storyboards to Kling 3.0 Omni payloads."""

__version__ = "0.1.0"
