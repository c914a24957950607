"""The service's built-in device functions, acted out on the conversation's device.

ItanniX's own clients handle ``set_device_volume``, ``adjust_device_volume``,
``quiet_device`` and ``stop_audio`` on the device they run on. In Home Assistant that
device is the voice satellite the conversation came from: its media player (on the same
device, or the one the reply plays on) takes the volume and playback commands. Every
function returns the output the assistant gets: what was done, or why nothing could be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
import json
from typing import Any, Final

from homeassistant.components.media_player.const import (
    ATTR_MEDIA_VOLUME_LEVEL,
    ATTR_MEDIA_VOLUME_MUTED,
    DOMAIN as MEDIA_PLAYER_DOMAIN,
    MediaPlayerEntityFeature,
    MediaPlayerState,
)
from homeassistant.const import (
    ATTR_ENTITY_ID,
    ATTR_SUPPORTED_FEATURES,
    SERVICE_MEDIA_PAUSE,
    SERVICE_MEDIA_STOP,
    SERVICE_VOLUME_DOWN,
    SERVICE_VOLUME_MUTE,
    SERVICE_VOLUME_SET,
    SERVICE_VOLUME_UP,
    STATE_UNAVAILABLE,
)
from homeassistant.core import Context, HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import voluptuous as vol

from .const import LOGGER

SET_DEVICE_VOLUME: Final = "set_device_volume"
ADJUST_DEVICE_VOLUME: Final = "adjust_device_volume"
QUIET_DEVICE: Final = "quiet_device"
STOP_AUDIO: Final = "stop_audio"
DEVICE_FUNCTIONS: Final = frozenset(
    {SET_DEVICE_VOLUME, ADJUST_DEVICE_VOLUME, QUIET_DEVICE, STOP_AUDIO}
)
# What the vendor's clients move the volume by.
VOLUME_STEP: Final = 0.1

_ACTIVE = {
    MediaPlayerState.PLAYING,
    MediaPlayerState.PAUSED,
    MediaPlayerState.BUFFERING,
}


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    """Where a conversation runs; all None for a typed conversation."""

    device_id: str | None
    satellite_entity_id: str | None
    media_player_entity_id: str | None
    stop_reply: Callable[[], Awaitable[None]] | None
    context: Context

    @property
    def typed(self) -> bool:
        """Whether the conversation has no device at all."""
        return (
            self.device_id is None
            and self.satellite_entity_id is None
            and self.media_player_entity_id is None
        )


def _result(message: str, **fields: Any) -> str:
    return json.dumps({"result": message, **fields})


def _error(message: str) -> str:
    return json.dumps({"error": message})


_TYPED = (
    "This is a typed conversation: there is no device to {what}. Nothing was changed."
)


def find_media_player(hass: HomeAssistant, target: DeviceTarget) -> str | None:
    """The media player that plays on the conversation's device, if there is one."""
    if target.media_player_entity_id is not None:
        return target.media_player_entity_id
    registry = er.async_get(hass)
    device_id = target.device_id
    if device_id is None and target.satellite_entity_id is not None:
        satellite = registry.async_get(target.satellite_entity_id)
        device_id = satellite.device_id if satellite is not None else None
    if device_id is None:
        return None
    players = sorted(
        entity.entity_id
        for entity in er.async_entries_for_device(registry, device_id)
        if entity.domain == MEDIA_PLAYER_DOMAIN
    )
    return players[0] if players else None


async def async_run_device_function(
    hass: HomeAssistant, name: str, arguments: Mapping[str, Any], target: DeviceTarget
) -> str:
    """Run one built-in device function; return the assistant's output."""
    if name == STOP_AUDIO:
        if target.stop_reply is None:
            return _result("Nothing is playing: there is no spoken reply to stop.")
        await target.stop_reply()
        return _result("Stopped the assistant's reply.")
    what = "quiet" if name == QUIET_DEVICE else "change the volume of"
    if target.typed:
        return _error(_TYPED.format(what=what))
    player = find_media_player(hass, target)
    state = hass.states.get(player) if player is not None else None
    if player is None or state is None:
        return _error(
            f"The device has no media player in Home Assistant, so there is no way "
            f"to {what} it. Nothing was changed."
        )
    if state.state == STATE_UNAVAILABLE:
        return _error(f"The device's media player ({player}) is unavailable.")
    try:
        if name == SET_DEVICE_VOLUME:
            return await _async_set_volume(hass, player, state, arguments, target)
        if name == ADJUST_DEVICE_VOLUME:
            return await _async_adjust_volume(hass, player, state, arguments, target)
        return await _async_quiet(hass, player, state, target)
    except (HomeAssistantError, vol.Invalid) as err:
        LOGGER.debug("Device function %s on %s failed: %s", name, player, err)
        return _error(f"The media player {player} refused: {err}")


def _number(value: Any) -> float | None:
    """A number, also from text: models and some players send "40" for 40."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _supports(state: State, feature: MediaPlayerEntityFeature) -> bool:
    return bool(int(state.attributes.get(ATTR_SUPPORTED_FEATURES) or 0) & feature)


async def _async_call(
    hass: HomeAssistant,
    service: str,
    player: str,
    target: DeviceTarget,
    **data: Any,
) -> None:
    await hass.services.async_call(
        MEDIA_PLAYER_DOMAIN,
        service,
        {ATTR_ENTITY_ID: player, **data},
        blocking=True,
        context=target.context,
    )


async def _async_set_volume(
    hass: HomeAssistant,
    player: str,
    state: State,
    arguments: Mapping[str, Any],
    target: DeviceTarget,
) -> str:
    level = _number(arguments.get("volume_level"))
    if level is None or not 0 <= level <= 100:
        return _error("volume_level must be a number from 0 to 100.")
    if not _supports(state, MediaPlayerEntityFeature.VOLUME_SET):
        return _error(f"The media player {player} has no volume control.")
    await _async_call(
        hass, SERVICE_VOLUME_SET, player, target, volume_level=round(level / 100, 2)
    )
    return _result(f"Volume set to {round(level)}%.", volume_level=round(level))


async def _async_adjust_volume(
    hass: HomeAssistant,
    player: str,
    state: State,
    arguments: Mapping[str, Any],
    target: DeviceTarget,
) -> str:
    action = arguments.get("action")
    if action not in ("increase", "decrease"):
        return _error('action must be "increase" or "decrease".')
    sign = 1 if action == "increase" else -1
    current = _number(state.attributes.get(ATTR_MEDIA_VOLUME_LEVEL))
    if _supports(state, MediaPlayerEntityFeature.VOLUME_SET) and current is not None:
        level = min(1.0, max(0.0, round(current + sign * VOLUME_STEP, 2)))
        await _async_call(hass, SERVICE_VOLUME_SET, player, target, volume_level=level)
        percent = round(level * 100)
        return _result(f"Volume {action}d to {percent}%.", volume_level=percent)
    if _supports(state, MediaPlayerEntityFeature.VOLUME_STEP):
        service = SERVICE_VOLUME_UP if sign > 0 else SERVICE_VOLUME_DOWN
        await _async_call(hass, service, player, target)
        return _result(f"Volume {action}d by one step.")
    return _error(f"The media player {player} has no volume control.")


async def _async_quiet(
    hass: HomeAssistant, player: str, state: State, target: DeviceTarget
) -> str:
    if _supports(state, MediaPlayerEntityFeature.VOLUME_MUTE):
        if state.attributes.get(ATTR_MEDIA_VOLUME_MUTED) is True:
            return _result("The device is already muted.")
        await _async_call(
            hass, SERVICE_VOLUME_MUTE, player, target, is_volume_muted=True
        )
        return _result("The device is muted.")
    if state.state not in _ACTIVE:
        return _result("The device is already quiet: nothing is playing.")
    if _supports(state, MediaPlayerEntityFeature.STOP):
        await _async_call(hass, SERVICE_MEDIA_STOP, player, target)
        return _result("Stopped the device's playback.")
    if _supports(state, MediaPlayerEntityFeature.PAUSE):
        await _async_call(hass, SERVICE_MEDIA_PAUSE, player, target)
        return _result("Paused the device's playback.")
    return _error(f"The media player {player} can neither mute nor stop.")
