//! The one vector codec: `f32` values as little-endian bytes (cache entries, embedded store).

/// The vector as `4 * len` little-endian bytes.
pub(crate) fn to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector of `dims` values in `bytes`; `None` when the length is not `4 * dims`.
pub(crate) fn from_le_bytes(bytes: &[u8], dims: usize) -> Option<Vec<f32>> {
    if bytes.len() != dims.checked_mul(4)? {
        return None;
    }
    Some(bytes.as_chunks::<4>().0.iter().map(|c| f32::from_le_bytes(*c)).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_checks_the_length() {
        let v = vec![1.5f32, -0.25, f32::MIN_POSITIVE];
        let bytes = super::to_le_bytes(&v);
        assert_eq!(super::from_le_bytes(&bytes, 3), Some(v));
        assert_eq!(super::from_le_bytes(&bytes, 2), None);
        assert_eq!(super::from_le_bytes(&bytes[..11], 3), None);
    }
}
