package conn

// msgDontWait: package syscall has no MSG_DONTWAIT on AIX. The peek relies
// on the socket being non-blocking, as the net package makes every socket.
const msgDontWait = 0
