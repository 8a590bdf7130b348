//! Sans-I/O wire protocol: framing, startup packets, the few messages the
//! proxy encodes itself, and the SCRAM/md5 exchanges. Knows nothing of
//! sockets or config.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod md5;
pub mod options;
pub mod scram;
pub mod secret;
pub mod startup;
