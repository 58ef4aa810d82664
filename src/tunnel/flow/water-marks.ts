// What a tunnel stream's write buffer may hold before whoever feeds it (a
// socket, the other half of a relayed connection) is paused, and the level it
// must drain to before feeding resumes. The stream's own `send() === false`
// is not enough: the muxer's 'drain' (its connection took more) reaches every
// stream, also one whose send window is still closed, and a fast source read
// again on each would fill the stream's write buffer without limit
// (measured: 230 MB on an agent behind a 200 Mbit/s link).
export const STREAM_HIGH_WATER = 128 * 1024;
export const STREAM_LOW_WATER = 32 * 1024;
