# The board-shaped build with the application in flash: asyncio as on stock firmware,
# then the firmware's own manifest without the port's board manifest (the unix port's
# pulls in micropython-lib packages that are not vendored and a board does not have).
include("$(MPY_DIR)/extmod/asyncio")
include("../../../firmware/manifest.py", port_manifest=False, sim_radio=True)
