"""The ItanniX Realtime integration: a speech-to-speech assistant for Home Assistant."""
