//! Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary) and the Avro
//! datum encoding the generator and tests use. Decoding (`value.rs`) uses the writer schema of
//! each record, which makes schema evolution free: two writer ids for one subject decode side by
//! side. It must not interpret envelopes.

use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("record is {0} bytes; the Confluent wire format needs at least 5")]
    TooShort(usize),
    #[error("bad magic byte {0:#04x}; expected 0x00 (Confluent wire format)")]
    BadMagic(u8),
}

/// Splits a Confluent-framed payload into (schema id, Avro body).
pub fn split_wire(payload: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if payload.len() < 5 {
        return Err(WireError::TooShort(payload.len()));
    }
    if payload[0] != 0 {
        return Err(WireError::BadMagic(payload[0]));
    }
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Ok((id, &payload[5..]))
}

/// Frames an Avro body with the Confluent header (used by the generator and tests).
pub fn frame_wire(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes one Avro datum with `schema` (the generator's and tests' side of `value::decode`).
pub fn encode_datum(schema: &apache_avro::Schema, value: Avro) -> Result<Vec<u8>, String> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_roundtrip_and_errors() {
        let framed = frame_wire(258, b"abc");
        assert_eq!(split_wire(&framed), Ok((258, &b"abc"[..])));
        assert_eq!(split_wire(b"\x01\0\0\0\x01x"), Err(WireError::BadMagic(1)));
        assert_eq!(split_wire(b"\0\0"), Err(WireError::TooShort(2)));
    }
}
