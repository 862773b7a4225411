//! A small, strict reader of the safetensors format, for `spherekit lipschitz`.
//!
//! A file is an 8-byte little-endian u64 N, N bytes of JSON (the header), then the data buffer:
//!
//! ```text
//! {"name": {"dtype": "F32", "shape": [64, 32], "data_offsets": [0, 8192]}, ...,
//!  "__metadata__": {"format": "pt"}}
//! ```
//!
//! `data_offsets` are [begin, end) byte offsets into the data buffer. The parser accepts exactly
//! this subset of JSON (objects, strings with every JSON escape, arrays of unsigned integers,
//! whitespace) and rejects anything else with the byte offset in the file where it went wrong:
//! other value types, duplicate or unknown keys, missing keys, numbers with signs, fractions,
//! exponents or leading zeros, unescaped control characters, lone surrogates, invalid UTF-8 and
//! anything after the top-level object but whitespace. Each tensor is checked: begin ≤ end ≤ the
//! data buffer's length, end − begin = product(shape) · dtype size (no overflow), no two tensors
//! overlap. Gaps between tensors are allowed and counted ([`Header::uncovered`]). Dtypes other
//! than F64, F32, F16 and BF16 are kept in the list (their offsets checked, their length too
//! when the dtype's size is known) for the caller to report and skip.
//!
//! [`SafeTensors::open`] reads only the header; tensor data is read on demand, so a large
//! checkpoint is not loaded whole to bound a few layers.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

/// The largest header accepted (the reference implementation's limit): a larger length is a
/// corrupt or foreign file, not a header to allocate.
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A parse or read error; `offset` is the byte offset in the file where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the file (None for I/O errors).
    pub offset: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl Error {
    fn at(offset: u64, message: impl Into<String>) -> Self {
        Error {
            offset: Some(offset),
            message: message.into(),
        }
    }
    fn io(message: impl Into<String>) -> Self {
        Error {
            offset: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "byte {o}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

/// A tensor's element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    /// Any other dtype string (integers, booleans, 8-bit floats, ...): listed, not bounded.
    Other(String),
}

impl Dtype {
    fn parse(s: &str) -> Dtype {
        match s {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            other => Dtype::Other(other.to_string()),
        }
    }

    /// The name as the file spells it.
    pub fn name(&self) -> &str {
        match self {
            Dtype::F64 => "F64",
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::Other(s) => s,
        }
    }

    /// Bytes per element, for every dtype of the format with a whole-byte size.
    pub fn size(&self) -> Option<usize> {
        Some(match self {
            Dtype::F64 => 8,
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::Other(s) => match s.as_str() {
                "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
                "I16" | "U16" => 2,
                "I32" | "U32" => 4,
                "I64" | "U64" | "C64" => 8,
                _ => return None,
            },
        })
    }

    /// Whether the tensor's values can be read as real numbers (F64, F32, F16, BF16).
    pub fn supported(&self) -> bool {
        !matches!(self, Dtype::Other(_))
    }
}

/// One tensor's header entry, validated against the data buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// [begin, end) in the data buffer.
    pub begin: u64,
    pub end: u64,
    /// Where the entry's name starts in the file (for error messages).
    pub header_offset: u64,
}

impl TensorInfo {
    /// The number of elements (the product of the shape; 1 for a scalar). Fits in usize: the
    /// header check bounded it by the data length.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed, validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The tensors in header order.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` in header order.
    pub metadata: Vec<(String, String)>,
    /// N, the header's length in bytes; the data buffer starts at byte 8 + N of the file.
    pub header_len: u64,
    /// The data buffer's length in bytes.
    pub data_len: u64,
    /// Bytes of the data buffer no tensor covers.
    pub uncovered: u64,
}

impl Header {
    /// Where the data buffer starts in the file.
    pub fn data_start(&self) -> u64 {
        8 + self.header_len
    }
}

enum Source {
    #[cfg(test)]
    Memory(Vec<u8>),
    File(Mutex<File>),
}

/// A safetensors file: its header, and its data read on demand.
pub struct SafeTensors {
    pub header: Header,
    /// The file's length in bytes.
    pub file_len: u64,
    source: Source,
}

impl fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeTensors")
            .field("header", &self.header)
            .field("file_len", &self.file_len)
            .finish_non_exhaustive()
    }
}

/// Checks the first 8 bytes and returns N, given the file's length.
fn header_len(prefix: &[u8], file_len: u64) -> Result<u64, Error> {
    if file_len < 8 {
        return Err(Error::at(
            0,
            format!(
                "the file is {file_len} bytes, too short for the 8-byte header length (not a \
                 safetensors file?)"
            ),
        ));
    }
    if prefix.starts_with(b"PK\x03\x04") {
        return Err(Error::at(
            0,
            "this is a zip archive (a PyTorch .pt/.bin checkpoint?), not a safetensors file",
        ));
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > file_len - 8 {
        return Err(Error::at(
            0,
            format!(
                "the header length {n} exceeds the {} bytes after it (truncated file, or not a \
                 safetensors file)",
                file_len - 8
            ),
        ));
    }
    if n > MAX_HEADER_BYTES {
        return Err(Error::at(
            0,
            format!("the header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(n)
}

impl SafeTensors {
    /// Reads and validates the header of the file at `path`; data is read by [`Self::read`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        let io = |what: &str, e: std::io::Error| Error::io(format!("{what}: {e}"));
        let mut file = File::open(path).map_err(|e| io("cannot open", e))?;
        let file_len = file.metadata().map_err(|e| io("cannot stat", e))?.len();
        let mut prefix = [0u8; 8];
        let got = (file_len as usize).min(8);
        file.read_exact(&mut prefix[..got])
            .map_err(|e| io("cannot read", e))?;
        let n = header_len(&prefix[..got], file_len)?;
        let mut json = vec![0u8; n as usize];
        file.read_exact(&mut json)
            .map_err(|e| io("cannot read the header", e))?;
        let header = parse_header(&json, file_len - 8 - n)?;
        Ok(SafeTensors {
            header,
            file_len,
            source: Source::File(Mutex::new(file)),
        })
    }

    /// Parses a whole file held in memory.
    #[cfg(test)]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Error> {
        let file_len = bytes.len() as u64;
        let n = header_len(&bytes[..bytes.len().min(8)], file_len)?;
        let header = parse_header(&bytes[8..8 + n as usize], file_len - 8 - n)?;
        Ok(SafeTensors {
            header,
            file_len,
            source: Source::Memory(bytes),
        })
    }

    /// The raw bytes of a tensor of this file's header.
    pub fn read(&self, t: &TensorInfo) -> Result<Vec<u8>, Error> {
        let start = self.header.data_start() + t.begin;
        let len = (t.end - t.begin) as usize;
        match &self.source {
            #[cfg(test)]
            Source::Memory(bytes) => Ok(bytes[start as usize..start as usize + len].to_vec()),
            Source::File(file) => {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                let mut buf = vec![0u8; len];
                file.seek(SeekFrom::Start(start))
                    .and_then(|_| file.read_exact(&mut buf))
                    .map_err(|e| {
                        Error::io(format!(
                            "reading tensor {:?} (bytes {start}..{}): {e}",
                            t.name,
                            start + len as u64
                        ))
                    })?;
                Ok(buf)
            }
        }
    }

    /// A tensor's values widened to f64 (exact for every supported dtype).
    pub fn read_f64(&self, t: &TensorInfo) -> Result<Vec<f64>, Error> {
        let bytes = self.read(t)?;
        Ok(match t.dtype {
            Dtype::F64 => decode::<f64>(&bytes),
            Dtype::F32 => decode::<f32>(&bytes).into_iter().map(f64::from).collect(),
            Dtype::F16 => decode::<half::f16>(&bytes)
                .into_iter()
                .map(half::f16::to_f64)
                .collect(),
            Dtype::BF16 => decode::<half::bf16>(&bytes)
                .into_iter()
                .map(half::bf16::to_f64)
                .collect(),
            Dtype::Other(ref d) => {
                return Err(Error::io(format!(
                    "tensor {:?}: dtype {d} is not supported",
                    t.name
                )));
            }
        })
    }
}

/// An element type stored little-endian.
pub trait FromLe: Sized {
    const SIZE: usize;
    fn from_le(b: &[u8]) -> Self;
}

impl FromLe for f64 {
    const SIZE: usize = 8;
    fn from_le(b: &[u8]) -> Self {
        f64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
}
impl FromLe for f32 {
    const SIZE: usize = 4;
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes(b.try_into().expect("4 bytes"))
    }
}
impl FromLe for half::f16 {
    const SIZE: usize = 2;
    fn from_le(b: &[u8]) -> Self {
        half::f16::from_bits(u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }
}
impl FromLe for half::bf16 {
    const SIZE: usize = 2;
    fn from_le(b: &[u8]) -> Self {
        half::bf16::from_bits(u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }
}

/// Little-endian elements of `bytes` (whatever its alignment).
pub fn decode<T: FromLe>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::from_le).collect()
}

// ---- the JSON subset ---------------------------------------------------------------------

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

/// The header starts at byte 8 of the file.
const BASE: u64 = 8;

impl Parser<'_> {
    fn offset(&self) -> u64 {
        BASE + self.pos as u64
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, Error> {
        Err(Error::at(self.offset(), message))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "the end of the header".to_string(),
            Some(c) if c.is_ascii_graphic() || c == b' ' => format!("{:?}", c as char),
            Some(c) => format!("byte 0x{c:02x}"),
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8, context: &str) -> Result<(), Error> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!(
                "expected {:?} {context}, found {}",
                c as char,
                self.describe()
            ))
        }
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return self.err("a \\u escape needs four hexadecimal digits"),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// A string (the opening quote next, after whitespace).
    fn string(&mut self, context: &str) -> Result<String, Error> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.err(format!(
                "expected a string {context}, found {}",
                self.describe()
            ));
        }
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            // The header was checked to be UTF-8, so runs of plain bytes are whole characters.
            let run = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[run..self.pos]).expect("checked UTF-8"));
            match self.peek() {
                None => {
                    return Err(Error::at(
                        BASE + start as u64,
                        "unterminated string (the header ends inside it)",
                    ));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let at = self.pos - 1;
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(Error::at(
                                        BASE + at as u64,
                                        "a high surrogate \\u escape must be followed by a low \
                                         one",
                                    ));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Error::at(
                                        BASE + at as u64,
                                        "a high surrogate \\u escape must be followed by a low \
                                         one",
                                    ));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(Error::at(
                                    BASE + at as u64,
                                    "a lone low surrogate \\u escape",
                                ));
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).expect("a valid scalar value"));
                            continue;
                        }
                        _ => return self.err(format!("invalid escape \\{}", self.describe())),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(c) => {
                    return self.err(format!(
                        "control character 0x{c:02x} in a string (must be escaped)"
                    ));
                }
            }
        }
    }

    /// An unsigned integer without sign, fraction, exponent or leading zeros.
    fn uint(&mut self, context: &str) -> Result<u64, Error> {
        self.ws();
        let start = self.pos;
        match self.peek() {
            Some(b'0'..=b'9') => {}
            Some(b'-') => return self.err(format!("negative number {context}")),
            _ => {
                return self.err(format!(
                    "expected an unsigned integer {context}, found {}",
                    self.describe()
                ));
            }
        }
        let mut v = 0u64;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.pos > start && self.s[start] == b'0' {
                return Err(Error::at(
                    BASE + start as u64,
                    format!("a number with a leading zero {context}"),
                ));
            }
            v = match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
            {
                Some(v) => v,
                None => {
                    return Err(Error::at(
                        BASE + start as u64,
                        format!("a number above 2^64 - 1 {context}"),
                    ));
                }
            };
            self.pos += 1;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(Error::at(
                BASE + start as u64,
                format!("not an unsigned integer {context} (fraction or exponent)"),
            ));
        }
        Ok(v)
    }

    /// An array of unsigned integers.
    fn uint_array(&mut self, context: &str) -> Result<Vec<u64>, Error> {
        self.ws();
        if self.peek() != Some(b'[') {
            return self.err(format!(
                "expected an array {context}, found {}",
                self.describe()
            ));
        }
        self.pos += 1;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(self.uint(context)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => {
                    return self.err(format!(
                        "expected ',' or ']' in an array {context}, found {}",
                        self.describe()
                    ));
                }
            }
        }
    }

    /// An object: calls `member(parser, key, key_offset)` with the parser at the value, which
    /// it must consume. Duplicate keys are rejected.
    fn object(
        &mut self,
        context: &str,
        mut member: impl FnMut(&mut Self, String, u64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.expect(b'{', context)?;
        let mut seen = std::collections::HashSet::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let at = self.offset();
            let key = self.string(&format!("(a key) {context}"))?;
            if !seen.insert(key.clone()) {
                return Err(Error::at(at, format!("duplicate key {key:?} {context}")));
            }
            self.expect(b':', &format!("after the key {key:?}"))?;
            member(self, key, at)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {
                    return self.err(format!(
                        "expected ',' or '}}' {context}, found {}",
                        self.describe()
                    ));
                }
            }
        }
    }
}

/// Parses and validates a header (`json`: the N bytes after the length) against a data buffer
/// of `data_len` bytes.
pub fn parse_header(json: &[u8], data_len: u64) -> Result<Header, Error> {
    if let Err(e) = std::str::from_utf8(json) {
        return Err(Error::at(
            BASE + e.valid_up_to() as u64,
            "the header is not valid UTF-8",
        ));
    }
    let mut p = Parser { s: json, pos: 0 };
    let mut tensors = Vec::new();
    let mut metadata = None;
    p.ws();
    if p.peek() != Some(b'{') {
        return p.err(format!(
            "the header must be a JSON object, found {}",
            p.describe()
        ));
    }
    p.object("in the header", |p, key, at| {
        if key == "__metadata__" {
            let mut m = Vec::new();
            p.object("in __metadata__", |p, k, _| {
                let v = p.string(&format!("(the value of {k:?} in __metadata__)"))?;
                m.push((k, v));
                Ok(())
            })?;
            metadata = Some(m);
            return Ok(());
        }
        let context = format!("in the entry of tensor {key:?}");
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        p.object(&context, |p, field, field_at| {
            match field.as_str() {
                "dtype" => dtype = Some(p.string(&format!("(dtype) {context}"))?),
                "shape" => shape = Some(p.uint_array(&format!("(shape) {context}"))?),
                "data_offsets" => {
                    let at = p.offset();
                    let o = p.uint_array(&format!("(data_offsets) {context}"))?;
                    if o.len() != 2 {
                        return Err(Error::at(
                            at,
                            format!("data_offsets must be [begin, end], got {o:?} {context}"),
                        ));
                    }
                    offsets = Some((o[0], o[1]));
                }
                other => {
                    return Err(Error::at(
                        field_at,
                        format!(
                            "unknown field {other:?} {context} (expected dtype, shape, \
                             data_offsets)"
                        ),
                    ));
                }
            }
            Ok(())
        })?;
        let missing = |what: &str| Error::at(at, format!("{what} missing {context}"));
        let dtype = Dtype::parse(&dtype.ok_or_else(|| missing("dtype"))?);
        let shape = shape.ok_or_else(|| missing("shape"))?;
        let (begin, end) = offsets.ok_or_else(|| missing("data_offsets"))?;
        tensors.push(check_tensor(key, dtype, &shape, begin, end, at, data_len)?);
        Ok(())
    })?;
    p.ws();
    if p.pos != json.len() {
        return p.err(format!(
            "unexpected {} after the header's object",
            p.describe()
        ));
    }
    let uncovered = check_overlaps(&tensors, data_len)?;
    Ok(Header {
        tensors,
        metadata: metadata.unwrap_or_default(),
        header_len: json.len() as u64,
        data_len,
        uncovered,
    })
}

fn check_tensor(
    name: String,
    dtype: Dtype,
    shape: &[u64],
    begin: u64,
    end: u64,
    at: u64,
    data_len: u64,
) -> Result<TensorInfo, Error> {
    let fail = |m: String| Error::at(at, format!("tensor {name:?}: {m}"));
    if begin > end {
        return Err(fail(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        )));
    }
    if end > data_len {
        return Err(fail(format!(
            "data_offsets [{begin}, {end}] reach beyond the data buffer, which holds {data_len} \
             bytes (truncated file?)"
        )));
    }
    // Every side fits in usize and so does the product: it is checked against the length.
    let mut elements: Option<u64> = Some(1);
    for &d in shape {
        elements = elements.and_then(|e| e.checked_mul(d));
    }
    let len = end - begin;
    match (dtype.size(), elements) {
        (Some(_), None) | (None, None) => {
            return Err(fail(format!(
                "shape {shape:?} has more than 2^64 - 1 elements"
            )));
        }
        (Some(size), Some(e)) => match e.checked_mul(size as u64) {
            Some(bytes) if bytes == len => {}
            Some(bytes) => {
                return Err(fail(format!(
                    "shape {shape:?} of {} needs {bytes} bytes, data_offsets [{begin}, {end}] \
                     hold {len}",
                    dtype.name()
                )));
            }
            None => {
                return Err(fail(format!(
                    "shape {shape:?} of {} needs more than 2^64 - 1 bytes",
                    dtype.name()
                )));
            }
        },
        // An unknown dtype: only the range is checked.
        (None, Some(_)) => {}
    }
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| fail(format!("shape {shape:?} does not fit this machine's usize")))?;
    if dtype.size().is_some()
        && shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none()
    {
        return Err(fail(format!(
            "shape {shape:?} does not fit this machine's usize"
        )));
    }
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        begin,
        end,
        header_offset: at,
    })
}

/// Rejects overlapping tensors; returns the bytes no tensor covers.
fn check_overlaps(tensors: &[TensorInfo], data_len: u64) -> Result<u64, Error> {
    let mut ranges: Vec<&TensorInfo> = tensors.iter().filter(|t| t.end > t.begin).collect();
    ranges.sort_by_key(|t| (t.begin, t.end));
    let mut covered = 0u64;
    for (i, t) in ranges.iter().enumerate() {
        if i > 0 {
            let prev = ranges[i - 1];
            if t.begin < prev.end {
                return Err(Error::at(
                    t.header_offset.max(prev.header_offset),
                    format!(
                        "tensors {:?} [{}, {}] and {:?} [{}, {}] overlap",
                        prev.name, prev.begin, prev.end, t.name, t.begin, t.end
                    ),
                ));
            }
        }
        covered += t.end - t.begin;
    }
    Ok(data_len - covered)
}

/// Builds a safetensors file (for tests): `(name, dtype, shape, data)`, packed in order.
#[cfg(test)]
pub fn build(tensors: &[(&str, &str, &[usize], Vec<u8>)], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut json = String::from("{");
    let mut data = Vec::new();
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        json.push_str(&format!(
            "{name:?}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            shape.join(","),
            data.len(),
            data.len() + bytes.len()
        ));
        data.extend_from_slice(bytes);
    }
    if !metadata.is_empty() {
        let m: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{k:?}:{v:?}"))
            .collect();
        json.push_str(&format!(
            "{}\"__metadata__\":{{{}}}",
            if tensors.is_empty() { "" } else { "," },
            m.join(",")
        ));
    }
    json.push('}');
    // Pad with spaces to 8 bytes, as the reference writer does.
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// Little-endian bytes of f32 values (for tests).
#[cfg(test)]
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of bf16 values (for tests).
#[cfg(test)]
pub fn bf16_bytes(v: &[half::bf16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the given header text and data buffer.
    fn raw(json: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn parse(json: &str, data_len: usize) -> Result<SafeTensors, Error> {
        SafeTensors::from_bytes(raw(json, &vec![0u8; data_len]))
    }

    /// The error of parsing, asserting that its message contains `needle`; returns its offset.
    fn fails(json: &str, data_len: usize, needle: &str) -> u64 {
        let e = parse(json, data_len).expect_err(json);
        assert!(
            e.message.contains(needle),
            "{json}: expected {needle:?} in {e}"
        );
        e.offset.expect("an offset")
    }

    fn entry(dtype: &str, shape: &str, begin: u64, end: u64) -> String {
        format!("{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}")
    }

    #[test]
    fn a_valid_file_parses_and_reads_back() {
        let w: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        let b: Vec<half::bf16> = [1.0, -0.5, 3.0].map(half::bf16::from_f64).to_vec();
        let ids: Vec<u8> = (0..4i64).flat_map(|v| v.to_le_bytes()).collect();
        let file = build(
            &[
                ("layer.weight", "F32", &[2, 3], f32_bytes(&w)),
                ("norm", "BF16", &[3], bf16_bytes(&b)),
                ("ids", "I64", &[4], ids),
                ("scalar", "F64", &[], 7.25f64.to_le_bytes().to_vec()),
                ("empty", "F32", &[0, 4], vec![]),
            ],
            &[("format", "pt")],
        );
        let st = SafeTensors::from_bytes(file.clone()).unwrap();
        let h = &st.header;
        assert_eq!(h.tensors.len(), 5);
        assert_eq!(h.metadata, vec![("format".into(), "pt".into())]);
        assert_eq!(h.uncovered, 0);
        assert_eq!(h.data_start() % 8, 0);
        let t = &h.tensors[0];
        assert_eq!(
            (t.name.as_str(), &t.dtype, &t.shape[..]),
            ("layer.weight", &Dtype::F32, &[2, 3][..])
        );
        assert_eq!(
            st.read_f64(t).unwrap(),
            w.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
        );
        assert_eq!(st.read_f64(&h.tensors[1]).unwrap(), vec![1.0, -0.5, 3.0]);
        assert_eq!(h.tensors[2].dtype, Dtype::Other("I64".into()));
        assert!(!h.tensors[2].dtype.supported());
        assert!(st.read_f64(&h.tensors[2]).is_err());
        assert_eq!(st.read_f64(&h.tensors[3]).unwrap(), vec![7.25]);
        assert_eq!(h.tensors[3].elements(), 1);
        assert_eq!(st.read_f64(&h.tensors[4]).unwrap(), Vec::<f64>::new());

        // The same through a real file, read on demand.
        let path =
            std::env::temp_dir().join(format!("spherekit-st-{}.safetensors", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let from_disk = SafeTensors::open(&path);
        std::fs::remove_file(&path).unwrap();
        let from_disk = from_disk.unwrap();
        assert_eq!(from_disk.header, st.header);
        assert_eq!(
            from_disk.read_f64(&from_disk.header.tensors[0]).unwrap(),
            st.read_f64(t).unwrap()
        );
    }

    #[test]
    fn escapes_whitespace_and_unknown_dtypes() {
        let json = format!(
            " {{ \"a\\u00e9\\ud83d\\ude00\\n\\\"\\/\\\\\" : {} ,\n\t\"x\": {}, \"__metadata__\": {{}} }}   ",
            entry("F16", "[ 2 ]", 0, 4),
            entry("X99", "[3, 5]", 4, 9)
        );
        let st = parse(&json, 9).unwrap();
        let t = &st.header.tensors;
        assert_eq!(t[0].name, "a\u{e9}\u{1F600}\n\"/\\");
        assert_eq!(t[1].dtype, Dtype::Other("X99".into()));
        assert_eq!(t[1].dtype.size(), None);
        assert!(st.header.metadata.is_empty());
        // Known-size unsupported dtypes are length-checked.
        fails(
            &format!("{{\"x\":{}}}", entry("I32", "[3]", 0, 8)),
            8,
            "needs 12 bytes",
        );
    }

    #[test]
    fn gaps_are_counted_not_rejected() {
        let json = format!(
            "{{\"a\":{},\"b\":{}}}",
            entry("F32", "[1]", 0, 4),
            entry("F32", "[1]", 8, 12)
        );
        assert_eq!(parse(&json, 16).unwrap().header.uncovered, 8);
    }

    #[test]
    fn truncated_files_are_rejected() {
        let good = build(
            &[("w", "F32", &[2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0]))],
            &[],
        );
        assert!(SafeTensors::from_bytes(good.clone()).is_ok());
        for cut in [0, 3, 7] {
            let e = SafeTensors::from_bytes(good[..cut].to_vec()).unwrap_err();
            assert!(e.message.contains("too short"), "{e}");
        }
        // Inside the header.
        let e = SafeTensors::from_bytes(good[..20].to_vec()).unwrap_err();
        assert!(e.message.contains("header length"), "{e}");
        // Inside the data.
        let e = SafeTensors::from_bytes(good[..good.len() - 1].to_vec()).unwrap_err();
        assert!(e.message.contains("beyond the data buffer"), "{e}");
        assert!(e.message.contains("\"w\""), "{e}");
        assert_eq!(e.offset, Some(9), "{e}"); // the entry's name
        // An empty header.
        let e = SafeTensors::from_bytes(raw("", &[])).unwrap_err();
        assert!(e.message.contains("end of the header"), "{e}");
    }

    #[test]
    fn huge_header_lengths_are_rejected_before_allocating() {
        for n in [u64::MAX, 1 << 40, 9] {
            let mut f = n.to_le_bytes().to_vec();
            f.extend_from_slice(b"{}");
            let e = SafeTensors::from_bytes(f).unwrap_err();
            assert!(e.message.contains("exceeds"), "{e}");
            assert_eq!(e.offset, Some(0));
        }
        // Within the file but above the limit.
        let n = MAX_HEADER_BYTES + 1;
        let e = header_len(&n.to_le_bytes(), n + 100).unwrap_err();
        assert!(e.message.contains("limit"), "{e}");
        let e =
            SafeTensors::from_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec()).unwrap_err();
        assert!(e.message.contains("zip"), "{e}");
    }

    #[test]
    fn bad_json_is_rejected_with_its_offset() {
        let e1 = entry("F32", "[1]", 0, 4);
        let cases: Vec<(String, &str, usize)> = vec![
            // (header, message fragment, offset of the error in the header)
            ("[]".into(), "must be a JSON object", 0),
            (format!("{{\"a\" {e1}}}"), "expected ':'", 5),
            (format!("{{\"a\":{e1},}}"), "(a key)", 54),
            (format!("{{\"a\":{e1}}} x"), "after the header's object", 55),
            (format!("{{\"a\":{e1}"), "expected ',' or '}'", 53),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}".into(), "leading zero", 29),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}".into(), "negative", 29),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}".into(), "fraction", 29),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}".into(), "fraction", 29),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}".into(), "above 2^64", 29),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}".into(), "unsigned integer", 31),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}".into(), "expected an array", 28),
            ("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}".into(), "expected a string", 14),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}".into(), "[begin, end]", 47),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}".into(), "unknown field", 53),
            ("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}".into(), "duplicate key", 20),
            (format!("{{\"a\":{e1},\"a\":{e1}}}"), "duplicate key", 54),
            ("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}".into(), "shape missing", 1),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}".into(), "data_offsets missing", 1),
            ("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}".into(), "dtype missing", 1),
            ("{\"a\":null}".into(), "expected '{'", 5),
            ("{\"a".into(), "unterminated string", 1),
            ("{\"a\\x\":1}".into(), "invalid escape", 4),
            ("{\"a\\u12\":1}".into(), "four hexadecimal", 7),
            ("{\"a\\ud800\":1}".into(), "followed by a low", 3),
            ("{\"a\\ud800\\u0041\":1}".into(), "followed by a low", 3),
            ("{\"a\\udc00\":1}".into(), "lone low surrogate", 3),
            ("{\"a\tb\":1}".into(), "control character", 3),
            ("{\"__metadata__\":{\"k\":1}}".into(), "expected a string", 21),
            ("{\"__metadata__\":[]}".into(), "expected '{'", 16),
        ];
        for (json, needle, at) in cases {
            let off = fails(&json, 4, needle);
            assert_eq!(off, 8 + at as u64, "{json}: offset");
        }
        // Invalid UTF-8, reported where it starts.
        let mut bad = b"{\"ab".to_vec();
        bad.extend_from_slice(&[0xff, b'"', b':', b'1', b'}']);
        let mut f = (bad.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(&bad);
        let e = SafeTensors::from_bytes(f).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
        assert_eq!(e.offset, Some(8 + 4));
    }

    #[test]
    fn bad_offsets_and_lengths_are_rejected() {
        let one = |dtype: &str, shape: &str, b: u64, e: u64| {
            format!("{{\"w\":{}}}", entry(dtype, shape, b, e))
        };
        fails(&one("F32", "[2, 3]", 0, 20), 24, "needs 24 bytes");
        fails(&one("F32", "[2, 3]", 0, 28), 28, "needs 24 bytes");
        fails(&one("BF16", "[4]", 4, 0), 8, "end before they begin");
        fails(&one("F32", "[2]", 4, 12), 8, "beyond the data buffer");
        fails(
            &one("F64", "[4294967296, 2147483648]", 0, 8),
            8,
            "more than 2^64 - 1 bytes",
        );
        fails(
            &one("F64", "[4294967296, 4294967296, 4294967296]", 0, 8),
            8,
            "more than 2^64 - 1 elements",
        );
        fails(&one("F32", "[0]", 0, 4), 8, "needs 0 bytes");
        // Overlaps, in either order in the header; touching ranges and empty tensors are fine.
        for (a, b) in [((0, 8), (4, 12)), ((4, 12), (0, 8)), ((0, 12), (4, 8))] {
            let json = format!(
                "{{\"a\":{},\"b\":{}}}",
                entry("U8", &format!("[{}]", a.1 - a.0), a.0, a.1),
                entry("U8", &format!("[{}]", b.1 - b.0), b.0, b.1)
            );
            fails(&json, 12, "overlap");
        }
        let json = format!(
            "{{\"a\":{},\"b\":{},\"c\":{}}}",
            entry("U8", "[4]", 0, 4),
            entry("U8", "[4]", 4, 8),
            entry("F32", "[0]", 4, 4)
        );
        assert!(parse(&json, 8).is_ok());
    }
}
