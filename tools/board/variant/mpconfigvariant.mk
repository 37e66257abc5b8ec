# Host-only extras a board does not have (and that need host libraries) are off.
MICROPY_PY_BTREE = 0
MICROPY_PY_FFI = 0
MICROPY_PY_SSL = 0
MICROPY_PY_THREAD = 0
MICROPY_VFS_FAT = 0
MICROPY_VFS_LFS1 = 0
MICROPY_VFS_LFS2 = 0

# tools/board passes FROZEN_MANIFEST for each of the two builds.
FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest_plain.py
