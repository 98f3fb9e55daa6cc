//! Reading and writing a store's topics as an application does: consumer groups, idempotent
//! producers, typed topics and their codecs. Everything here is built on `Store` and `Topic`;
//! nothing below (`store`, `log`) knows about it.

pub mod codec;
pub(crate) mod consumer;
pub(crate) mod producer;
pub(crate) mod typed;
