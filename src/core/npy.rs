//! NumPy `.npy` arrays (format versions 1-3, little-endian, C order): read as f64 values with
//! their shape, written as float32 or raw bytes in numpy's own layout. Region files (`.npz`
//! members) and precomputed video features (one `.npy` per video) use them.

use anyhow::Result;

/// A .npy array: its shape and values as f64 (exact for f32 and for the integers counts hold).
pub struct Npy {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

pub fn parse_npy(bytes: &[u8], what: &dyn Fn(String) -> anyhow::Error) -> Result<Npy> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(what("not a .npy array".into()));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(what(format!(".npy version {v} is not supported"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| what("cut short".into()))
        .and_then(|h| std::str::from_utf8(h).map_err(|_| what("header is not text".into())))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[i..].trim_start())
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| what("header has no descr".into()))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(what("Fortran-ordered arrays are not supported".into()));
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| what("header has no shape".into()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| what(format!("shape entry `{s}` is not a size")))
        })
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| what("shape too large".into()))?;
    let data = &bytes[start + hlen..];
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
        "<i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        "<i8" => (8, |b| {
            i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64
        }),
        "<u4" => (4, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        other => {
            return Err(what(format!(
                "dtype `{other}` is not supported (float32/64, int32/64)"
            )))
        }
    };
    if data.len() != count * size {
        return Err(what(format!(
            "{} data bytes for {count} values of {size} bytes",
            data.len()
        )));
    }
    Ok(Npy {
        shape,
        values: data.chunks_exact(size).map(conv).collect(),
    })
}

pub fn npy_bytes_f32(shape: &[usize], v: &[f32]) -> Vec<u8> {
    npy_raw("<f4", shape, &f32_bytes(v))
}

pub fn npy_raw(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_s = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    // Pad so that the data starts on a multiple of 64 bytes (numpy's own layout).
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
