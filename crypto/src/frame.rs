//! The von frame: the outer UDP payload of every VON packet.
//!
//! ```text
//!  0               4     5     6         8              12             16                        24
//! +---------------+-----+-----+---------+--------------+--------------+-------------------------+
//! | ON id (u32)   | ver | flg | reserved| sender (u32) | epoch (u32)  | sequence (u64)          |
//! |               | typ |     | 0x0000  |              |              |                         |
//! +---------------+-----+-----+---------+--------------+--------------+-------------------------+
//! | ciphertext of the inner packet ...                                  | tag (16 bytes)          |
//! +---------------------------------------------------------------------+-------------------------+
//! ```
//!
//! All integers are big-endian. The ON id comes first so a router can classify
//! the packet; the whole 24-byte header is the AEAD's associated data.
//!
//! Two layers, as in smoltcp's `wire` module: [`Frame`] is a checked view over
//! bytes whose accessors cannot panic once [`Frame::new_checked`] succeeded, and
//! [`Header`] is the parsed representation with [`Header::parse`] and
//! [`Header::emit`]. Every offset, size and limit is a constant here.

use crate::aead::Cipher;

/// Byte offsets of every header field.
pub mod field {
    /// A byte range inside the frame.
    pub type Field = core::ops::Range<usize>;

    /// ON id, first so that routers can classify without parsing further.
    pub const ON_ID: Field = 0..4;
    /// Version in the high nibble, frame type in the low nibble.
    pub const VERSION_TYPE: usize = 4;
    /// Flags; the low bits name the cipher (see [`super::Flags`]).
    pub const FLAGS: usize = 5;
    /// Reserved, must be zero.
    pub const RESERVED: Field = 6..8;
    /// Sender member id, assigned by the key manager.
    pub const SENDER: Field = 8..12;
    /// Key epoch the frame is sealed under.
    pub const EPOCH: Field = 12..16;
    /// Per-sender sequence number, never reused under one key.
    pub const SEQ: Field = 16..24;
    /// Ciphertext then tag, to the end of the frame.
    pub const PAYLOAD: core::ops::RangeFrom<usize> = 24..;
}

/// Length of the header, which is also the associated data.
pub const HEADER_LEN: usize = field::SEQ.end;
/// Length of the AEAD tag at the end of every frame.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to the inner packet.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Shortest valid frame: a header and a tag around an empty payload (a keepalive).
pub const MIN_FRAME_LEN: usize = OVERHEAD;
/// Longest valid frame: the largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_FRAME_LEN: usize = 65_507;
/// The only frame version this code speaks.
pub const VERSION: u8 = 1;
/// Flag bits that name the cipher.
pub const FLAGS_CIPHER_MASK: u8 = 0x03;
/// Flag bits not yet assigned; a sender sets them to zero, a receiver refuses them.
pub const FLAGS_RESERVED_MASK: u8 = !FLAGS_CIPHER_MASK;

/// Globally unique id of an overlay network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnId(pub u32);

/// Member id inside one VON, assigned by the key manager, stable per certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u32);

/// Key epoch: which group key sealed the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u32);

/// What the frame carries (low nibble of byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// An inner IP packet.
    Data,
    /// An empty, authenticated probe that keeps an underlay's liveness known.
    Keepalive,
}

impl FrameType {
    const DATA: u8 = 0x0;
    const KEEPALIVE: u8 = 0x1;

    /// The wire value of this type.
    pub fn to_u4(self) -> u8 {
        match self {
            FrameType::Data => Self::DATA,
            FrameType::Keepalive => Self::KEEPALIVE,
        }
    }

    /// Reads a wire value; unknown values are an error.
    pub fn from_u4(value: u8) -> Result<Self, FrameError> {
        match value {
            Self::DATA => Ok(FrameType::Data),
            Self::KEEPALIVE => Ok(FrameType::Keepalive),
            other => Err(FrameError::UnknownFrameType { value: other }),
        }
    }
}

/// The flags byte. Only valid combinations can be held: the cipher bits name
/// a known [`Cipher`] and the reserved bits are zero.
///
/// The cipher travels in the frame so that a frame sealed under another cipher
/// than the receiver's key is refused as such, not as a generic tag failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// Flags of a frame sealed under `cipher`.
    pub fn new(cipher: Cipher) -> Self {
        Flags(cipher.flag_bits())
    }

    /// Reads the flags byte of a frame.
    pub fn from_bits(bits: u8) -> Result<Self, FrameError> {
        if bits & FLAGS_RESERVED_MASK != 0 {
            return Err(FrameError::ReservedFlags { flags: bits });
        }
        Cipher::from_flag_bits(bits & FLAGS_CIPHER_MASK)?;
        Ok(Flags(bits))
    }

    /// The wire byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The cipher the frame claims to be sealed under.
    pub fn cipher(self) -> Cipher {
        // Every constructor checked the cipher bits.
        Cipher::from_flag_bits(self.0 & FLAGS_CIPHER_MASK).unwrap_or(Cipher::DEFAULT)
    }
}

/// Why a byte string is not a von frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than a header and a tag.
    #[error(
        "frame of {len} bytes is shorter than the {MIN_FRAME_LEN}-byte minimum (header and tag)"
    )]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// Longer than any UDP payload.
    #[error("frame of {len} bytes is longer than the {MAX_FRAME_LEN}-byte maximum UDP payload")]
    TooLong {
        /// Length received.
        len: usize,
    },
    /// A version this code does not speak.
    #[error(
        "frame version {version} is not supported (this agent speaks {VERSION}); upgrade the older side"
    )]
    UnsupportedVersion {
        /// Version on the wire.
        version: u8,
    },
    /// A frame type this code does not know.
    #[error("frame type {value:#x} is unknown (known: data 0x0, keepalive 0x1)")]
    UnknownFrameType {
        /// Low nibble of byte 4.
        value: u8,
    },
    /// Flag bits that are not assigned.
    #[error(
        "flags {flags:#04x} set reserved bits (mask {FLAGS_RESERVED_MASK:#04x}); sender is newer or broken"
    )]
    ReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// Cipher bits that name no known cipher.
    #[error("flags name cipher {value} which is unknown (0 = aes-256-gcm, 1 = chacha20-poly1305)")]
    UnknownCipher {
        /// The cipher bits.
        value: u8,
    },
    /// Reserved bytes 6..8 not zero.
    #[error("reserved header bytes are {value:#06x}, must be zero")]
    ReservedNotZero {
        /// Bytes 6..8 as a big-endian u16.
        value: u16,
    },
    /// A buffer too small to emit into.
    #[error("buffer of {len} bytes cannot hold a {HEADER_LEN}-byte header")]
    BufferTooSmall {
        /// Length of the buffer.
        len: usize,
    },
}

/// A checked view over the bytes of a frame.
///
/// After [`Frame::new_checked`] every accessor is in bounds; field values are
/// not yet validated (that is [`Header::parse`]).
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` after checking that it is long enough for a header and a
    /// tag and no longer than a UDP payload.
    pub fn new_checked(buffer: T) -> Result<Self, FrameError> {
        let len = buffer.as_ref().len();
        if len < MIN_FRAME_LEN {
            return Err(FrameError::TooShort { len });
        }
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLong { len });
        }
        Ok(Frame { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// ON id (bytes 0..4).
    pub fn on_id(&self) -> OnId {
        OnId(self.read_u32(field::ON_ID))
    }

    /// Version nibble, unvalidated.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE] >> 4
    }

    /// Frame type nibble, unvalidated.
    pub fn frame_type(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE] & 0x0f
    }

    /// Flags byte, unvalidated.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Reserved bytes, unvalidated.
    pub fn reserved(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::RESERVED];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Sender member id.
    pub fn sender(&self) -> MemberId {
        MemberId(self.read_u32(field::SENDER))
    }

    /// Key epoch.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.read_u32(field::EPOCH))
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buffer.as_ref()[field::SEQ]);
        u64::from_be_bytes(b)
    }

    /// The 24 header bytes, which are the associated data.
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// Ciphertext and tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Length of the ciphertext without the tag.
    pub fn ciphertext_len(&self) -> usize {
        self.buffer.as_ref().len() - OVERHEAD
    }

    fn read_u32(&self, range: field::Field) -> u32 {
        let b = &self.buffer.as_ref()[range];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// The parsed header: only values this code accepts can be held here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Overlay network.
    pub on_id: OnId,
    /// What the payload is.
    pub frame_type: FrameType,
    /// Flags, including the cipher.
    pub flags: Flags,
    /// Sending member.
    pub sender: MemberId,
    /// Key epoch.
    pub epoch: Epoch,
    /// Sequence number, see [`crate::sequence`].
    pub seq: u64,
}

impl Header {
    /// Validates the header fields of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Self, FrameError> {
        let version = frame.version();
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion { version });
        }
        let frame_type = FrameType::from_u4(frame.frame_type())?;
        let flags = Flags::from_bits(frame.flags())?;
        let reserved = frame.reserved();
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero { value: reserved });
        }
        Ok(Header {
            on_id: frame.on_id(),
            frame_type,
            flags,
            sender: frame.sender(),
            epoch: frame.epoch(),
            seq: frame.seq(),
        })
    }

    /// Checks `bytes` as a frame and parses its header in one step.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, FrameError> {
        Header::parse(&Frame::new_checked(bytes)?)
    }

    /// The 24 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[field::ON_ID].copy_from_slice(&self.on_id.0.to_be_bytes());
        out[field::VERSION_TYPE] = (VERSION << 4) | self.frame_type.to_u4();
        out[field::FLAGS] = self.flags.bits();
        out[field::RESERVED].copy_from_slice(&[0, 0]);
        out[field::SENDER].copy_from_slice(&self.sender.0.to_be_bytes());
        out[field::EPOCH].copy_from_slice(&self.epoch.0.to_be_bytes());
        out[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), FrameError> {
        let len = buf.len();
        let dst = buf
            .get_mut(..HEADER_LEN)
            .ok_or(FrameError::BufferTooSmall { len })?;
        dst.copy_from_slice(&self.to_bytes());
        Ok(())
    }
}
