//! The few V4L2 ioctls capture needs, for single- and multi-planar devices.
//!
//! `linuxvideo` streams only single-planar buffers and has no way to read
//! the frame rate back, so capture talks to the kernel directly: the
//! structures below mirror `<linux/videodev2.h>` for 64-bit Linux (their
//! sizes are checked in tests, which is what keeps the ioctl numbers right).
//! Every answer from the driver is treated as untrusted: a short or odd
//! buffer is an error, never a panic.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
const MEMORY_MMAP: u32 = 1;
/// `V4L2_BUF_FLAG_ERROR`: the frame was captured with errors.
const BUF_FLAG_ERROR: u32 = 0x40;
const CAP_VIDEO_CAPTURE: u32 = 0x1;
const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x1000;
const CAP_STREAMING: u32 = 0x0400_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// `V4L2_CAP_TIMEPERFRAME`: the driver accepts a frame interval.
const CAP_TIMEPERFRAME: u32 = 0x1000;
/// `VIDEO_MAX_PLANES`.
const MAX_PLANES: usize = 8;
/// Buffers asked for: enough that capture never waits for the encoder,
/// few enough that a frame is never old when it is dequeued.
const BUFFERS: u32 = 4;

#[repr(C)]
struct Capability {
    driver: [u8; 16],
    card: [u8; 32],
    bus_info: [u8; 32],
    version: u32,
    capabilities: u32,
    device_caps: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct FmtDesc {
    index: u32,
    type_: u32,
    flags: u32,
    description: [u8; 32],
    pixelformat: u32,
    mbus_code: u32,
    reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct PixFormat {
    width: u32,
    height: u32,
    pixelformat: u32,
    field: u32,
    bytesperline: u32,
    sizeimage: u32,
    colorspace: u32,
    priv_: u32,
    flags: u32,
    ycbcr_enc: u32,
    quantization: u32,
    xfer_func: u32,
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct PlanePixFormat {
    sizeimage: u32,
    bytesperline: u32,
    reserved: [u16; 6],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct PixFormatMplane {
    width: u32,
    height: u32,
    pixelformat: u32,
    field: u32,
    colorspace: u32,
    plane_fmt: [PlanePixFormat; MAX_PLANES],
    num_planes: u8,
    flags: u8,
    ycbcr_enc: u8,
    quantization: u8,
    xfer_func: u8,
    reserved: [u8; 7],
}

/// `struct v4l2_format`: the union holds pointers, hence 8-byte alignment.
#[repr(C)]
struct Format {
    type_: u32,
    fmt: FormatUnion,
}

#[repr(C)]
union FormatUnion {
    pix: PixFormat,
    pix_mp: PixFormatMplane,
    raw: [u8; 200],
    _align: [u64; 25],
}

#[repr(C)]
struct RequestBuffers {
    count: u32,
    type_: u32,
    memory: u32,
    capabilities: u32,
    flags: u8,
    reserved: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Plane {
    bytesused: u32,
    length: u32,
    m: u64,
    data_offset: u32,
    reserved: [u32; 11],
}

#[repr(C)]
struct Buffer {
    index: u32,
    type_: u32,
    bytesused: u32,
    flags: u32,
    field: u32,
    timestamp: libc::timeval,
    timecode: [u32; 4],
    sequence: u32,
    memory: u32,
    /// `offset` (single-planar) or `planes` pointer (multi-planar).
    m: u64,
    length: u32,
    reserved2: u32,
    request_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Fract {
    numerator: u32,
    denominator: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CaptureParm {
    capability: u32,
    capturemode: u32,
    timeperframe: Fract,
    extendedmode: u32,
    readbuffers: u32,
    reserved: [u32; 4],
}

#[repr(C)]
struct StreamParm {
    type_: u32,
    parm: StreamParmUnion,
}

#[repr(C)]
union StreamParmUnion {
    capture: CaptureParm,
    raw: [u8; 200],
}

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'V' as u64) << 8) | nr
}
const READ: u64 = 2;
const WRITE: u64 = 1;
const VIDIOC_QUERYCAP: u64 = ioc(READ, 0, size_of::<Capability>());
const VIDIOC_ENUM_FMT: u64 = ioc(READ | WRITE, 2, size_of::<FmtDesc>());
const VIDIOC_S_FMT: u64 = ioc(READ | WRITE, 5, size_of::<Format>());
const VIDIOC_REQBUFS: u64 = ioc(READ | WRITE, 8, size_of::<RequestBuffers>());
const VIDIOC_QUERYBUF: u64 = ioc(READ | WRITE, 9, size_of::<Buffer>());
const VIDIOC_QBUF: u64 = ioc(READ | WRITE, 15, size_of::<Buffer>());
const VIDIOC_DQBUF: u64 = ioc(READ | WRITE, 17, size_of::<Buffer>());
const VIDIOC_STREAMON: u64 = ioc(WRITE, 18, size_of::<i32>());
const VIDIOC_STREAMOFF: u64 = ioc(WRITE, 19, size_of::<i32>());
const VIDIOC_G_PARM: u64 = ioc(READ | WRITE, 21, size_of::<StreamParm>());
const VIDIOC_S_PARM: u64 = ioc(READ | WRITE, 22, size_of::<StreamParm>());

/// Runs one ioctl, retrying when a signal interrupted it.
///
/// # Safety
/// `arg` must be the structure the request number encodes.
unsafe fn xioctl<T>(fd: RawFd, request: u64, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: the caller passes the structure matching `request`; the
        // kernel reads and writes at most its size (encoded in `request`).
        let r = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn zeroed<T>() -> T {
    // SAFETY: only used for the plain-data V4L2 structures above, for which
    // all-zero bytes are a valid (and the documented initial) value.
    unsafe { std::mem::zeroed() }
}

fn text(bytes: &[u8]) -> String {
    CStr::from_bytes_until_nul(bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
}

/// What the device says it is.
#[derive(Clone, Debug)]
pub struct Caps {
    pub card: String,
    /// Single-planar capture.
    pub capture: bool,
    /// Multi-planar capture only (SoC cameras, vivid `multiplanar=2`).
    pub capture_mplane: bool,
    pub streaming: bool,
}

/// A format the device offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatDesc {
    pub fourcc: u32,
    pub description: String,
}

/// The format the driver settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes per row of each plane.
    pub strides: [u32; 2],
    pub planes: u8,
}

/// An open V4L2 device, before streaming.
pub struct Device {
    file: File,
    buf_type: u32,
}

impl Device {
    /// Opens the node non-blocking: capture waits with poll(2) so that it
    /// notices shutdown.
    pub fn open(path: &str) -> io::Result<Device> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Device {
            file,
            buf_type: BUF_TYPE_VIDEO_CAPTURE,
        })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Queries the capabilities and picks the buffer type capture will use:
    /// single-planar when offered, else multi-planar.
    pub fn caps(&mut self) -> io::Result<Caps> {
        let mut c: Capability = zeroed();
        // SAFETY: VIDIOC_QUERYCAP takes a v4l2_capability.
        unsafe { xioctl(self.fd(), VIDIOC_QUERYCAP, &mut c)? };
        let flags = if c.capabilities & CAP_DEVICE_CAPS != 0 {
            c.device_caps
        } else {
            c.capabilities
        };
        let caps = Caps {
            card: text(&c.card),
            capture: flags & CAP_VIDEO_CAPTURE != 0,
            capture_mplane: flags & CAP_VIDEO_CAPTURE_MPLANE != 0,
            streaming: flags & CAP_STREAMING != 0,
        };
        self.buf_type = if !caps.capture && caps.capture_mplane {
            BUF_TYPE_VIDEO_CAPTURE_MPLANE
        } else {
            BUF_TYPE_VIDEO_CAPTURE
        };
        Ok(caps)
    }

    pub fn is_mplane(&self) -> bool {
        self.buf_type == BUF_TYPE_VIDEO_CAPTURE_MPLANE
    }

    /// The formats the device offers for capture.
    pub fn formats(&self) -> Vec<FormatDesc> {
        let mut out = Vec::new();
        // A driver listing hundreds of formats is broken; stop somewhere.
        for index in 0..256 {
            let mut d: FmtDesc = zeroed();
            d.index = index;
            d.type_ = self.buf_type;
            // SAFETY: VIDIOC_ENUM_FMT takes a v4l2_fmtdesc.
            if unsafe { xioctl(self.fd(), VIDIOC_ENUM_FMT, &mut d) }.is_err() {
                break;
            }
            out.push(FormatDesc {
                fourcc: d.pixelformat,
                description: text(&d.description),
            });
        }
        out
    }

    /// Asks for a format and size; the driver answers with what it will do.
    pub fn set_format(&mut self, fourcc: u32, width: u32, height: u32) -> io::Result<Negotiated> {
        let mut f: Format = zeroed();
        f.type_ = self.buf_type;
        if self.is_mplane() {
            let mut mp: PixFormatMplane = zeroed();
            mp.width = width;
            mp.height = height;
            mp.pixelformat = fourcc;
            mp.field = 1; // V4L2_FIELD_NONE
            f.fmt.pix_mp = mp;
        } else {
            let mut p: PixFormat = zeroed();
            p.width = width;
            p.height = height;
            p.pixelformat = fourcc;
            p.field = 1;
            f.fmt.pix = p;
        }
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { xioctl(self.fd(), VIDIOC_S_FMT, &mut f)? };
        if self.is_mplane() {
            // SAFETY: for a multi-planar type the driver filled `pix_mp`.
            let mp = unsafe { f.fmt.pix_mp };
            let planes = mp.plane_fmt;
            let (s0, s1) = (planes[0].bytesperline, planes[1].bytesperline);
            Ok(Negotiated {
                fourcc: mp.pixelformat,
                width: mp.width,
                height: mp.height,
                strides: [s0, s1],
                planes: mp.num_planes.clamp(1, MAX_PLANES as u8),
            })
        } else {
            // SAFETY: for a single-planar type the driver filled `pix`.
            let p = unsafe { f.fmt.pix };
            Ok(Negotiated {
                fourcc: p.pixelformat,
                width: p.width,
                height: p.height,
                strides: [p.bytesperline, 0],
                planes: 1,
            })
        }
    }

    /// Asks for a frame rate, when the driver takes one, and returns the
    /// rate in effect (read back with VIDIOC_G_PARM), if the driver says.
    pub fn set_fps(&self, fps: Option<f64>) -> Option<f64> {
        let mut p: StreamParm = zeroed();
        p.type_ = self.buf_type;
        // SAFETY: VIDIOC_G_PARM takes a v4l2_streamparm.
        unsafe { xioctl(self.fd(), VIDIOC_G_PARM, &mut p) }.ok()?;
        // SAFETY: for a capture type the driver filled `capture`.
        let cap = unsafe { p.parm.capture };
        if let Some(fps) = fps
            && cap.capability & CAP_TIMEPERFRAME != 0
        {
            let mut s: StreamParm = zeroed();
            s.type_ = self.buf_type;
            let mut c = cap;
            // In milliframes so fractional rates survive.
            c.timeperframe = Fract {
                numerator: 1000,
                denominator: ((fps * 1000.0).round() as u32).max(1),
            };
            s.parm.capture = c;
            // SAFETY: VIDIOC_S_PARM takes a v4l2_streamparm. A refusal is
            // fine: the rate read back below says what happens instead.
            let _ = unsafe { xioctl(self.fd(), VIDIOC_S_PARM, &mut s) };
        }
        let mut g: StreamParm = zeroed();
        g.type_ = self.buf_type;
        // SAFETY: as above.
        unsafe { xioctl(self.fd(), VIDIOC_G_PARM, &mut g) }.ok()?;
        // SAFETY: as above.
        let t = unsafe { g.parm.capture }.timeperframe;
        (t.numerator != 0 && t.denominator != 0)
            .then(|| f64::from(t.denominator) / f64::from(t.numerator))
    }

    /// Maps the driver's buffers, queues them all and starts capture.
    pub fn start(self) -> io::Result<Stream> {
        let fd = self.fd();
        let mut req: RequestBuffers = zeroed();
        req.count = BUFFERS;
        req.type_ = self.buf_type;
        req.memory = MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a v4l2_requestbuffers.
        unsafe { xioctl(fd, VIDIOC_REQBUFS, &mut req)? };
        if req.count == 0 {
            return Err(io::Error::other("the driver gave no capture buffers"));
        }
        let mut stream = Stream {
            device: self,
            buffers: Vec::new(),
            streaming: false,
        };
        for index in 0..req.count {
            let mut planes = [zeroed::<Plane>(); MAX_PLANES];
            let mut b = stream.buffer(index, &mut planes);
            // SAFETY: VIDIOC_QUERYBUF takes a v4l2_buffer (whose planes
            // pointer, for multi-planar, points at `planes`, alive here).
            unsafe { xioctl(fd, VIDIOC_QUERYBUF, &mut b)? };
            let mut maps = Vec::new();
            let regions: Vec<(u32, u64)> = if stream.device.is_mplane() {
                let n = (b.length as usize).min(MAX_PLANES);
                planes[..n]
                    .iter()
                    .map(|p| (p.length, p.m & 0xffff_ffff))
                    .collect()
            } else {
                vec![(b.length, b.m & 0xffff_ffff)]
            };
            for (length, offset) in regions {
                maps.push(Mapping::new(fd, length as usize, offset)?);
            }
            stream.buffers.push(maps);
        }
        for index in 0..req.count {
            stream.queue(index)?;
        }
        let mut t = stream.device.buf_type as i32;
        // SAFETY: VIDIOC_STREAMON takes the buffer type as an int.
        unsafe { xioctl(fd, VIDIOC_STREAMON, &mut t)? };
        stream.streaming = true;
        Ok(stream)
    }
}

/// One mmap'ed plane of a driver buffer.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; it is only read
// through `&self` on the capture thread, and unmapped on drop.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize, offset: u64) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::other("the driver gave an empty buffer"));
        }
        // SAFETY: a fresh shared read-only mapping of the device at the
        // offset the driver handed out; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self, used: usize) -> &[u8] {
        // SAFETY: the mapping is `len` bytes long and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, used.min(self.len)) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// A device that is capturing. Dropping it stops capture.
pub struct Stream {
    device: Device,
    buffers: Vec<Vec<Mapping>>,
    streaming: bool,
}

/// One dequeued frame: its planes' bytes, valid until the callback returns.
pub struct Captured<'a> {
    pub planes: Vec<&'a [u8]>,
    /// The driver flagged the frame as corrupt.
    pub error: bool,
}

impl Stream {
    fn buffer(&self, index: u32, planes: &mut [Plane; MAX_PLANES]) -> Buffer {
        let mut b: Buffer = zeroed();
        b.index = index;
        b.type_ = self.device.buf_type;
        b.memory = MEMORY_MMAP;
        if self.device.is_mplane() {
            b.m = planes.as_mut_ptr() as u64;
            b.length = MAX_PLANES as u32;
        }
        b
    }

    fn queue(&self, index: u32) -> io::Result<()> {
        let mut planes = [zeroed::<Plane>(); MAX_PLANES];
        let mut b = self.buffer(index, &mut planes);
        // SAFETY: VIDIOC_QBUF takes a v4l2_buffer; `planes` outlives the call.
        unsafe { xioctl(self.device.fd(), VIDIOC_QBUF, &mut b) }
    }

    /// The device, to wait on for frames.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.device.file.as_fd()
    }

    /// Takes the next filled buffer, hands its bytes to `f` and gives it
    /// back to the driver. `Ok(false)` when no frame was ready.
    pub fn dequeue(&mut self, f: impl FnOnce(Captured<'_>)) -> io::Result<bool> {
        let mut planes = [zeroed::<Plane>(); MAX_PLANES];
        let mut b = self.buffer(0, &mut planes);
        // SAFETY: VIDIOC_DQBUF takes a v4l2_buffer; `planes` outlives the call.
        match unsafe { xioctl(self.device.fd(), VIDIOC_DQBUF, &mut b) } {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        let index = b.index;
        let Some(maps) = self.buffers.get(index as usize) else {
            return Err(io::Error::other(format!(
                "the driver returned unknown buffer {index}"
            )));
        };
        let captured = if self.device.is_mplane() {
            let n = (b.length as usize).min(maps.len());
            let planes = planes[..n]
                .iter()
                .zip(maps)
                .map(|(p, m)| {
                    // The payload starts at data_offset within the plane.
                    let used = m.bytes(p.bytesused as usize);
                    used.get(p.data_offset as usize..).unwrap_or_default()
                })
                .collect();
            Captured {
                planes,
                error: b.flags & BUF_FLAG_ERROR != 0,
            }
        } else {
            Captured {
                planes: vec![maps[0].bytes(b.bytesused as usize)],
                error: b.flags & BUF_FLAG_ERROR != 0,
            }
        };
        f(captured);
        self.queue(index)?;
        Ok(true)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.streaming {
            let mut t = self.device.buf_type as i32;
            // SAFETY: VIDIOC_STREAMOFF takes the buffer type as an int. It
            // may fail on an unplugged device; closing cleans up anyway.
            let _ = unsafe { xioctl(self.device.fd(), VIDIOC_STREAMOFF, &mut t) };
        }
        // Unmap before the file closes (fields drop in declaration order,
        // device first) so the driver can free its buffers at once.
        self.buffers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel checks the size encoded in each ioctl number, so these
    /// must match `<linux/videodev2.h>` on 64-bit Linux exactly.
    #[test]
    fn structures_match_the_kernel_abi() {
        assert_eq!(size_of::<Capability>(), 104);
        assert_eq!(size_of::<FmtDesc>(), 64);
        assert_eq!(size_of::<PixFormat>(), 48);
        assert_eq!(size_of::<PixFormatMplane>(), 192);
        assert_eq!(size_of::<Format>(), 208);
        assert_eq!(size_of::<RequestBuffers>(), 20);
        assert_eq!(size_of::<Plane>(), 64);
        assert_eq!(size_of::<Buffer>(), 88);
        assert_eq!(size_of::<StreamParm>(), 204);
        assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
        assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
        assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
        assert_eq!(VIDIOC_G_PARM, 0xc0cc_5615);
        assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
    }

    #[test]
    fn names_are_cut_at_the_nul() {
        assert_eq!(text(b"vivid\0\0junk"), "vivid");
        assert_eq!(text(b"full"), "full");
    }
}
