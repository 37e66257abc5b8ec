"""Board presets: radio chip and pins of the LoRa boards the firmware supports.

Plain dicts so the same table serves the board at boot (MicroPython) and the host
deploy tool (CPython). A preset is exactly the dict loranode.radio_lora.make_modem()
reads. Pin numbers are ESP32 GPIO numbers; None means "not wired".

  chip            "sx1276" or "sx1262"
  spi_id          hardware SPI id (1: routed to any pins through the GPIO matrix)
  sck, mosi, miso SPI pins
  cs, reset       radio NSS and NRESET
  busy            SX126x BUSY (None on SX127x)
  dio0            SX127x DIO0 = "RX/TX done" interrupt (None on SX126x)
  dio1            SX127x DIO1 = "RX timeout" / SX126x DIO1 = the IRQ line
  tcxo_mv         SX126x: DIO3 powers the TCXO at this voltage in millivolts (None: crystal)
  dio2_rf_sw      SX126x: DIO2 drives the antenna TX/RX switch
  pa_boost        SX127x: the antenna is on the PA_BOOST pin (all presets here)
  max_power_dbm   highest output power the board's radio path supports
  modem_api       "async": the firmware runs on asyncio, so micropython-lib's async modem
                  classes (package lora-async) are built and installed
"""

from __future__ import annotations

from typing import Any

CHIPS = ("sx1276", "sx1262")
MODEM_API = "async"

# micropython-lib's lora drivers: the chip driver; the modem API package comes from
# modem_api ("lora-async" or "lora-sync").
CHIP_PACKAGES = {
    "sx1276": "lora-sx127x",
    "sx1262": "lora-sx126x",
}

# SX1276 through PA_BOOST: 2..20 dBm. SX1262 PA: -9..22 dBm (datasheets).
CHIP_POWER_RANGE = {
    "sx1276": (2, 20),
    "sx1262": (-9, 22),
}

# Highest GPIO number on the ESP32 family (ESP32-S3 goes to GPIO48).
MAX_GPIO = 48

BOARDS = {
    # Heltec WiFi LoRa 32 V2 (ESP32 + SX1276, PA_BOOST).
    # Source: espressif/arduino-esp32 variants/heltec_wifi_lora_32_V2/pins_arduino.h
    # (SS=18 MOSI=27 MISO=19 SCK=5 RST_LoRa=14 DIO0=26 DIO1=35) and
    # meshtastic/firmware variants/esp32/heltec_v2/variant.h (LORA_RESET 14, DIO0 26, DIO1 35).
    "heltec-v2": {
        "chip": "sx1276",
        "spi_id": 1,
        "sck": 5,
        "mosi": 27,
        "miso": 19,
        "cs": 18,
        "reset": 14,
        "busy": None,
        "dio0": 26,
        "dio1": 35,
        "tcxo_mv": None,
        "dio2_rf_sw": False,
        "pa_boost": True,
        "max_power_dbm": 20,
        "modem_api": MODEM_API,
    },
    # Heltec WiFi LoRa 32 V3 (ESP32-S3 + SX1262, 1.8 V TCXO on DIO3, DIO2 RF switch).
    # Source: meshtastic/firmware variants/esp32s3/heltec_v3/variant.h
    # (LORA_SCK 9, LORA_MISO 11, LORA_MOSI 10, LORA_CS 8, LORA_RESET 12, DIO1 14, BUSY 13,
    #  SX126X_DIO2_AS_RF_SWITCH, SX126X_DIO3_TCXO_VOLTAGE 1.8).
    "heltec-v3": {
        "chip": "sx1262",
        "spi_id": 1,
        "sck": 9,
        "mosi": 10,
        "miso": 11,
        "cs": 8,
        "reset": 12,
        "busy": 13,
        "dio0": None,
        "dio1": 14,
        "tcxo_mv": 1800,
        "dio2_rf_sw": True,
        "pa_boost": False,
        "max_power_dbm": 22,
        "modem_api": MODEM_API,
    },
    # LilyGO T-Beam (ESP32) with the SX1276 module.
    # Source: Xinyuan-LilyGO/LilyGo-LoRa-Series examples/Factory/utilities.h, T_BEAM_SX1276
    # (RADIO_SCLK 5, MISO 19, MOSI 27, CS 18, DIO0 26, RST 23, DIO1 33) and
    # meshtastic/firmware variants/esp32/tbeam/variant.h (LORA_RESET 23, DIO0 26, DIO1 33).
    "tbeam-sx1276": {
        "chip": "sx1276",
        "spi_id": 1,
        "sck": 5,
        "mosi": 27,
        "miso": 19,
        "cs": 18,
        "reset": 23,
        "busy": None,
        "dio0": 26,
        "dio1": 33,
        "tcxo_mv": None,
        "dio2_rf_sw": False,
        "pa_boost": True,
        "max_power_dbm": 20,
        "modem_api": MODEM_API,
    },
    # LilyGO T-Beam (ESP32) with the SX1262 module (same footprint; BUSY on the DIO2 pad).
    # Source: LilyGo-LoRa-Series examples/Factory/utilities.h, T_BEAM_SX1262
    # (RADIO_BUSY_PIN 32, DIO1 33, RST 23, CS 18) and meshtastic/firmware
    # variants/esp32/tbeam/variant.h (SX126X_BUSY 32, SX126X_DIO2_AS_RF_SWITCH,
    # SX126X_DIO3_TCXO_VOLTAGE 1.8).
    "tbeam-sx1262": {
        "chip": "sx1262",
        "spi_id": 1,
        "sck": 5,
        "mosi": 27,
        "miso": 19,
        "cs": 18,
        "reset": 23,
        "busy": 32,
        "dio0": None,
        "dio1": 33,
        "tcxo_mv": 1800,
        "dio2_rf_sw": True,
        "pa_boost": False,
        "max_power_dbm": 22,
        "modem_api": MODEM_API,
    },
    # LilyGO TTGO LoRa32 V2.1 (board revision T3 V1.6, ESP32 + SX1276).
    # Source: LilyGo-LoRa-Series examples/Factory/utilities.h, T3_V1_6_SX1276
    # (RADIO_SCLK 5, MISO 19, MOSI 27, CS 18, DIO0 26, RST 23, DIO1 33) and
    # meshtastic/firmware variants/esp32/tlora_v2_1_16/variant.h (RESET 23, DIO0 26, DIO1 33).
    "ttgo-lora32-v21": {
        "chip": "sx1276",
        "spi_id": 1,
        "sck": 5,
        "mosi": 27,
        "miso": 19,
        "cs": 18,
        "reset": 23,
        "busy": None,
        "dio0": 26,
        "dio1": 33,
        "tcxo_mv": None,
        "dio2_rf_sw": False,
        "pa_boost": True,
        "max_power_dbm": 20,
        "modem_api": MODEM_API,
    },
}

CUSTOM = "custom"

# Keys of the "pins" config section for board "custom" (a preset without modem_api).
CUSTOM_PIN_KEYS = (
    "chip",
    "spi_id",
    "sck",
    "mosi",
    "miso",
    "cs",
    "reset",
    "busy",
    "dio0",
    "dio1",
    "tcxo_mv",
    "dio2_rf_sw",
    "pa_boost",
    "max_power_dbm",
)


def names() -> list[str]:
    """Every board name the config accepts, presets first, sorted, then "custom"."""
    out = sorted(BOARDS)
    out.append(CUSTOM)
    return out


def packages(preset: dict[str, Any]) -> tuple[str, str]:
    """The micropython-lib packages `mpremote mip install` puts on the board for `preset`."""
    return (CHIP_PACKAGES[preset["chip"]], "lora-" + preset["modem_api"])


def from_pins(pins: dict[str, Any]) -> dict[str, Any]:
    """Build a preset dict from a validated custom "pins" section."""
    preset = {"modem_api": MODEM_API}
    for key in CUSTOM_PIN_KEYS:
        preset[key] = pins[key]
    return preset


def get(name: str, pins: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset for board `name`; for "custom", built from the validated `pins` section.

    Raises KeyError for an unknown name (config.validate reports it as a ConfigError first).
    """
    if name == CUSTOM:
        if pins is None:
            raise KeyError(name)
        return from_pins(pins)
    return BOARDS[name]
