pub mod crypto;
pub mod transport;
