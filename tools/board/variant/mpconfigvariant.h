// Lorachain's board-shaped unix port: the MicroPython 1.28 unix port built as a 32-bit
// program (-m32) with the settings of the ESP32 port that decide how much heap and C
// stack our code needs. tools/board builds it twice from this one variant:
//   lorachain-plain   nothing of ours frozen (code from .mpy/.py files, as on stock
//                     ESP32 firmware, which also freezes only asyncio and its own boot);
//   lorachain-frozen  lorawire, loranode and micropython-lib's lora drivers frozen
//                     through firmware/manifest.py (code in flash, as in a custom build).
// What a board has and this build copies (ports/esp32/mpconfigport.h, v1.28):
//   * 32-bit objects, 31-bit small ints, ticks_ms wrapping every 2**30 ms (-m32);
//   * EXTRA_FEATURES ROM level and single-precision floats (MICROPY_FLOAT_IMPL_FLOAT);
//   * a 15,360-byte C stack for the main task (the ESP32's "stack: ... out of 15360"):
//     main.c sets the limit to 40000 * UNIX_STACK_MULTIPLIER, so the multiplier is the
//     fraction 384/1000, written without parentheses to stay integer arithmetic;
//   * MICROPY_ALLOC_PATH_MAX 128: every nested import keeps a path buffer of that size
//     on the C stack; the unix port would take PATH_MAX (4096) and overflow 15 KB after
//     three nested imports. mpconfigport.h sets it to PATH_MAX, so PATH_MAX is redefined
//     here, after <limits.h> (nothing in this port sizes an OS buffer with PATH_MAX).
// What it cannot copy: the Xtensa call windows use more stack per C call than x86, and
// the heap is one block (an ESP32 build adds heap chunks from ESP-IDF on demand).
#include <limits.h>
#undef PATH_MAX
#define PATH_MAX 128

#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)
#define UNIX_STACK_MULTIPLIER 384 / 1000

#include "ports/unix/variants/mpconfigvariant_common.h"
