// Package relp speaks RELP, rsyslog's Reliable Event Logging Protocol
// (librelp; rsyslog's imrelp receives it, omrelp sends it), as a client,
// for a conn.BatchWriter's acknowledged delivery:
//
//	m := conn.New("tcp", "collector:2514")
//	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()))
//
// In RELP every message is a command the server answers: "rsp 200 OK"
// once it has taken the message, another code if it refuses it. The
// BatchWriter keeps each message until it is answered and sends the
// unanswered ones again on the next connection.
//
// # What it speaks
//
// Frames are TXNR SP COMMAND SP DATALEN [SP DATA] LF, as librelp writes
// them. The session opens with "1 open" offering relp_version=0 (the
// version librelp speaks), relp_software (WithSoftware) and
// commands=syslog, and needs a 200 answer offering the syslog command;
// each message is then one "syslog" command, txnrs 2, 3, ..., 1 after
// 999,999,999 as the specification says; "close" ends the session, and
// the "serverclose" hint from the server ends it too (ErrServerClose).
// RELP's TLS (tls=on in rsyslog) is not negotiated inside the protocol:
// use a TLS dialer on the conn.Manager if the server expects TLS. No
// compression (tls.compression) and no other commands are spoken.
//
// # Messages
//
// A message goes as it is, but one trailing LF is stripped: loggers end
// lines with one, and RELP frames the message itself, so rsyslog would
// otherwise keep it in the message. Only that one: "a\n\n" goes as "a\n",
// "a\r\n" as "a\r". A message longer than MaxMessage is truncated. The
// server bounds what it accepts (rsyslog's imrelp maxDataSize, by default
// its maxMessageSize): since rsyslog 8.35 a longer message is truncated by
// the server; a server in oversizeMode "abort" ends the session instead,
// and the message would be sent again on every connection: keep messages
// within the server's bound.
//
// # Answers
//
// Answers may come in any order (the specification allows it; librelp
// answers in order): an Ack reports only the contiguous prefix answered.
// An answer for a txnr not outstanding (never sent, or answered already),
// a frame whose DATALEN is above MaxResponse, a TXNR or DATALEN of more
// than 9 digits, a command of more than 32 letters, or any byte the
// grammar does not allow, ends the session with an error matching
// ErrProtocol: a server that breaks the protocol is not believed, and
// the client never waits for bytes that could not complete a frame.
//
// The relptest subpackage runs a RELP server in-process for tests.
package relp
