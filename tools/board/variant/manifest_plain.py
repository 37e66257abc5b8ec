# Stock ESP32 firmware freezes asyncio (ports/esp32/boards/manifest.py); so does this
# build. Nothing of ours: the firmware comes from .mpy or .py files.
include("$(MPY_DIR)/extmod/asyncio")
