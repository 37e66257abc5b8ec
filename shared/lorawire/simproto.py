"""The datagram protocol between a simulated radio and the meshsim medium (UDP, loopback).

One definition for both ends: the medium (tools/meshsim/medium.py, CPython) and the
node's SimRadio (firmware/loranode/radio_sim.py, MicroPython and CPython). Only names
and struct formats: each end packs and parses with `struct` itself. All integers
big-endian.

node -> medium
  REGISTER    0x01  ">B8sIBIbB" type, node_id[8], freq_hz u32, sf u8, bw_hz u32,
                    tx_power_dbm i8, coding_rate u8 (5..8 = 4/5..4/8), then the
                    node name (UTF-8, 1..MAX_NAME bytes; the topology's name for the
                    node). Sent again to change radio parameters. Answer: REGISTERED.
  TX          0x02  ">BHIBIbB"  type, seq u16, freq_hz, sf, bw_hz, tx_power_dbm,
                    coding_rate, then the payload (1..255 bytes). Answer: TX_DONE
                    after the simulated time on air.
  STATS       0x03  ">B"        Answer: STATS_REPLY. Any client may ask.
  BYE         0x04  ">B"        The node leaves; no answer.
  STATS_JSON  0x05  ">B"        Answer: STATS_JSON_REPLY (per-node detail).
  TX_TIMED    0x06  ">BHIBIbBI" as TX, plus airtime_us u32: the sender says how long it is
                    on air (an emulated chip, tools/chipsim, times its frames from its own
                    modulation registers); the medium uses that instead of computing it.
                    Answer: TX_DONE, as for TX.
medium -> node
  REGISTERED  0x81  ">Bdf"      type, sim_now_s f64, speed f32
  TX_DONE     0x82  ">BHBdd"    type, seq, status u8 (ST_*), airtime_ms f64, sim_end_s f64
  STATS_REPLY 0x83  ">BIIIIIId" type, sent, delivered, collided, lost, half_duplex,
                    rejected, sim_now_s
  RX          0x84  ">Bhhdd"    type, rssi_dbm i16, snr_q i16 (dB*4, as the SX127x
                    register), sim_start_s, sim_end_s, then the payload.
  STATS_JSON_REPLY 0x85         type, then a UTF-8 JSON object (the medium's stats);
                                "nodes" is null (and "nodes_omitted" the count) when
                                the detail would not fit one datagram.
  RX_CRC      0x86  ">Bhhdd"    as RX, for a frame that arrived with a bad payload CRC (fate
                    "corrupted"); the payload is garbled. A receiver that does not know
                    the type ignores it: SimRadio never sees such a frame, an emulated
                    chip reports a CRC error, as its modem would.
"""

T_REGISTER = 0x01
T_TX = 0x02
T_STATS = 0x03
T_BYE = 0x04
T_STATS_JSON = 0x05
T_TX_TIMED = 0x06
T_REGISTERED = 0x81
T_TX_DONE = 0x82
T_STATS_REPLY = 0x83
T_RX = 0x84
T_STATS_JSON_REPLY = 0x85
T_RX_CRC = 0x86

REGISTER_FMT = ">B8sIBIbB"
TX_FMT = ">BHIBIbB"
TX_TIMED_FMT = ">BHIBIbBI"
REGISTERED_FMT = ">Bdf"
TX_DONE_FMT = ">BHBdd"
STATS_FMT = ">BIIIIIId"
RX_FMT = ">Bhhdd"

# TX_DONE status
ST_OK = 0
ST_BUSY = 1  # already sending
ST_UNREGISTERED = 2
ST_BAD_PARAMS = 3  # bad radio parameters or payload

MAX_NAME = 32  # bytes of a node name in REGISTER
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 47000
