"""An ItanniX-compatible realtime service on loopback, for tests and development."""

from .behaviour import Behaviour
from .brain import FunctionCallSpec, ScriptedBrain, Turn
from .faults import Faults
from .peer import EmulatedSession
from .server import Emulator

__all__ = [
    "Behaviour",
    "EmulatedSession",
    "Emulator",
    "Faults",
    "FunctionCallSpec",
    "ScriptedBrain",
    "Turn",
]
