"""Counting the connections in flight to retired backends from /proc/net/tcp text."""

from __future__ import annotations

from projectdeployer.default_plugins.nginx.netconns import connections, in_flight_to

# Captured from a sidecar's namespace (IPv4): listening on 5100 and 5432, nginx connected to
# 172.18.0.5:8000 (ESTABLISHED) and to 172.18.0.6:8000 (TIME_WAIT), an app's pooled session to
# nginx:5432 from 172.18.0.7:43210, and an upstream connect in progress to 172.18.0.5:8000.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:13EC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 020012AC:A0F2 050012AC:1F40 01 00000000:00000000 00:00000000 00000000   101        0 3 1 0
   3: 020012AC:A0F4 060012AC:1F40 06 00000000:00000000 03:00000F9F 00000000     0        0 0 3 0
   4: 020012AC:1538 070012AC:A8CA 01 00000000:00000000 00:00000000 00000000   101        0 4 1 0
   5: 020012AC:A0F6 050012AC:1F40 02 00000000:00000000 01:00000064 00000002   101        0 5 1 0
"""
# A dual-stack socket's view of an IPv4 peer (::ffff:172.18.0.5) and a real IPv6 one (fd00::5).
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 0000000000000000FFFF0000020012AC:A100 0000000000000000FFFF0000050012AC:1F40 01 00000000:00000000
   1: 000000FD000000000000000002000000:A102 000000FD000000000000000005000000:1F40 01 00000000:00000000
"""


def test_rows_parse_to_endpoints_and_states() -> None:
    rows = list(connections(TCP))
    assert len(rows) == 6  # the header is skipped
    local, remote, state = rows[2]
    assert (str(local[0]), local[1]) == ("172.18.0.2", 41202)
    assert (str(remote[0]), remote[1], state) == ("172.18.0.5", 8000, "01")


def test_only_connecting_and_established_connections_to_the_targets_count() -> None:
    assert in_flight_to(TCP, [("172.18.0.5", 8000)]) == 2  # established + connecting
    assert in_flight_to(TCP, [("172.18.0.6", 8000)]) == 0  # only TIME_WAIT left
    # A client's session *to* the sidecar is not a connection to that client's port 8000.
    assert in_flight_to(TCP, [("172.18.0.7", 8000)]) == 0
    assert in_flight_to(TCP, []) == 0


def test_ipv6_and_ipv4_mapped_peers() -> None:
    assert in_flight_to(TCP6, [("172.18.0.5", 8000)]) == 1
    assert in_flight_to(TCP6, [("fd00::5", 8000)]) == 1
    assert in_flight_to(TCP + TCP6, [("172.18.0.5", 8000), ("fd00::5", 8000)]) == 4


def test_garbage_lines_are_skipped() -> None:
    assert list(connections("cat: /proc/net/tcp6: No such file or directory\n   7: zz:zz yy:yy 01\n")) == []
