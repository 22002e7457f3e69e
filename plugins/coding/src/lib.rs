//! Coding primitives shared by gradcodec's entropy coders (the
//! `gradcodec-plugin-entropy-coders` library) and the fused pairs other
//! libraries implement against them (CO3's float-convert + huffman), so both
//! write the same bits from one source:
//!
//! - [`bitpack`]: the `bitpack` coder's fixed-width layout (also written
//!   directly by the quantizers' fused pairs);
//! - [`bits`]: bit I/O (LSB-first and MSB-first) and the universal codes;
//! - [`huffman_code`]: canonical, length-limited Huffman codes;
//! - [`parametric`]: the Huffman code of a quantizer's model pmf (the
//!   `huffman` coder's `model: parametric`).
//!
//! This crate is a plain library, never a plugin: it exports no root module,
//! so any plugin may link it.

pub mod bitpack;
pub mod bits;
pub mod huffman_code;
pub mod parametric;
