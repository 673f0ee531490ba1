package feedrank.streaming.engine;

import java.io.ByteArrayOutputStream;

/** Protobuf's wire format by hand, for the bytes the join writes without a message. */
final class Wire {
  static final int VARINT = 0;
  static final int I64 = 1;
  static final int LEN = 2;

  private Wire() {}

  /** A growing byte buffer that writes varints, tags and little-endian doubles. */
  static final class Out extends ByteArrayOutputStream {
    Out() {
      super(64);
    }

    Out varint(long value) {
      while ((value & ~0x7fL) != 0) {
        write((int) (value & 0x7f | 0x80));
        value >>>= 7;
      }
      write((int) value);
      return this;
    }

    Out tag(int field, int wireType) {
      return varint((long) field << 3 | wireType);
    }

    Out fixedDouble(double value) {
      long bits = Double.doubleToRawLongBits(value);
      for (int i = 0; i < 8; i++) {
        write((int) (bits >>> (8 * i)));
      }
      return this;
    }

    Out bytes(byte[] data) {
      write(data, 0, data.length);
      return this;
    }

    /** A length-prefixed blob (varint length, then the bytes). */
    Out blob(byte[] data) {
      return varint(data.length).bytes(data);
    }
  }

  /** Reads what {@link Out} writes; truncation raises {@link LabelState.FormatError}. */
  static final class In {
    private final byte[] data;
    private int at;

    In(byte[] data, int at) {
      this.data = data;
      this.at = at;
    }

    long varint() {
      long value = 0;
      for (int shift = 0; shift < 64; shift += 7) {
        if (at >= data.length) {
          throw new LabelState.FormatError("truncated label state");
        }
        int b = data[at++] & 0xff;
        value |= (long) (b & 0x7f) << shift;
        if (b < 0x80) {
          return value;
        }
      }
      throw new LabelState.FormatError("a varint longer than ten bytes in the label state");
    }

    boolean hasMore() {
      return at < data.length;
    }

    double fixedDouble() {
      if (data.length - at < 8) {
        throw new LabelState.FormatError("truncated label state");
      }
      long bits = 0;
      for (int i = 7; i >= 0; i--) {
        bits = bits << 8 | (data[at + i] & 0xffL);
      }
      at += 8;
      return Double.longBitsToDouble(bits);
    }

    int oneByte() {
      if (at >= data.length) {
        throw new LabelState.FormatError("truncated label state");
      }
      return data[at++] & 0xff;
    }

    byte[] blob() {
      long length = varint();
      if (length > data.length - at) {
        throw new LabelState.FormatError("truncated label state");
      }
      byte[] value = java.util.Arrays.copyOfRange(data, at, at + (int) length);
      at += (int) length;
      return value;
    }
  }
}
