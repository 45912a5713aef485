//! Three Raft nodes over the real TCP peer network on loopback: commits and
//! failover, and a peer port that refuses strangers and garbage without
//! harm to the cluster.
