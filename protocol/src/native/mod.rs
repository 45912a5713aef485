//! ferromq's native binary protocol: length-prefixed prost frames modelled on AMQP 1.0
//! (connections, sessions, links, credit, settlement). See `protocol/NATIVE.md`.
