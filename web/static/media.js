// The local camera and microphone: acquisition, device choice, mute, camera off and
// audio-only mode. Peer connections read `audioTrack` / `videoTrack` and listen for
// "tracks" to swap them in with replaceTrack (no renegotiation).

// Moderate by default: up to three outgoing streams in a four-person mesh on a home
// uplink, often from a phone.
const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function describe(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The browser is not allowed to use your camera or microphone. Allow them in the " +
        "browser's site settings (the icon next to the address), then reload the page.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera or microphone was found. Plug one in, or join with sound only.";
    case "NotReadableError":
    case "AbortError":
      return "Your camera or microphone is being used by another app. Close that app, " +
        "then try again.";
    default:
      return "Your camera and microphone could not be started.";
  }
}

// Events: "tracks" (the tracks changed: peer connections must replaceTrack),
// "devices" (the device lists changed), "error" (detail: {message}).
export class LocalMedia extends EventTarget {
  constructor() {
    super();
    this.stream = new MediaStream();
    this.audioTrack = null;
    this.videoTrack = null;
    this.muted = false;
    this.cameraOff = false;
    this.audioOnly = false;
    this.cameraId = "";
    this.microphoneId = "";
    this.cameras = [];
    this.microphones = [];
    if (navigator.mediaDevices) {
      navigator.mediaDevices.addEventListener("devicechange", () => this.listDevices());
    }
  }

  get available() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  }

  async start() {
    if (!this.available) {
      this.fail(new Error("unsupported"),
        "This browser cannot use a camera here. Use an up-to-date Chrome, Safari, Firefox or Edge.");
      return false;
    }
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO, video: VIDEO });
    } catch (error) {
      // Sound alone is still a visit: try the microphone before giving up.
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO });
        this.fail(error, `${describe(error)} You can still talk with sound only.`);
      } catch (audioError) {
        this.fail(audioError, describe(audioError));
      }
    }
    if (stream) {
      this.setTrack("audio", stream.getAudioTracks()[0] || null);
      this.setTrack("video", stream.getVideoTracks()[0] || null);
    }
    await this.listDevices();
    this.changed();
    return stream !== null;
  }

  fail(error, message) {
    this.dispatchEvent(new CustomEvent("error", { detail: { message, name: error.name } }));
  }

  setTrack(kind, track) {
    const old = kind === "audio" ? this.audioTrack : this.videoTrack;
    if (old && old !== track) {
      this.stream.removeTrack(old);
      old.stop();
    }
    if (track) {
      track.enabled = kind === "audio" ? !this.muted : !this.cameraOff;
      if (!this.stream.getTracks().includes(track)) this.stream.addTrack(track);
      const settings = track.getSettings();
      if (kind === "audio") this.microphoneId = settings.deviceId || this.microphoneId;
      else this.cameraId = settings.deviceId || this.cameraId;
    }
    if (kind === "audio") this.audioTrack = track;
    else this.videoTrack = track;
  }

  async listDevices() {
    if (!this.available) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    this.cameras = devices.filter((d) => d.kind === "videoinput" && d.deviceId);
    this.microphones = devices.filter((d) => d.kind === "audioinput" && d.deviceId);
    this.dispatchEvent(new Event("devices"));
  }

  async useMicrophone(deviceId) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { ...AUDIO, deviceId: { exact: deviceId } } });
      this.setTrack("audio", stream.getAudioTracks()[0]);
      this.changed();
    } catch (error) {
      this.fail(error, describe(error));
    }
  }

  async useCamera(deviceId) {
    this.cameraId = deviceId;
    if (this.audioOnly) return;
    // Stop the old camera first: some phones cannot open two cameras at once.
    if (this.videoTrack) this.videoTrack.stop();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { ...VIDEO, deviceId: { exact: deviceId } } });
      this.setTrack("video", stream.getVideoTracks()[0]);
    } catch (error) {
      this.setTrack("video", null);
      this.fail(error, describe(error));
    }
    this.changed();
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.audioTrack) this.audioTrack.enabled = !muted;
  }

  // Camera off keeps the track but sends black frames: the other side sees at once
  // that the camera is off, and turning it back on needs no renegotiation.
  setCameraOff(off) {
    this.cameraOff = off;
    if (this.videoTrack) this.videoTrack.enabled = !off;
  }

  // Audio-only releases the camera entirely; peers also stop receiving video (see
  // peer-link.js) so a poor connection carries sound alone.
  async setAudioOnly(on) {
    this.audioOnly = on;
    if (on) {
      this.setTrack("video", null);
    } else if (this.available) {
      try {
        const video = this.cameraId ? { ...VIDEO, deviceId: { exact: this.cameraId } } : VIDEO;
        const stream = await navigator.mediaDevices.getUserMedia({ video });
        this.setTrack("video", stream.getVideoTracks()[0]);
      } catch (error) {
        this.fail(error, describe(error));
      }
    }
    this.changed();
  }

  changed() {
    this.dispatchEvent(new Event("tracks"));
  }

  stop() {
    for (const track of this.stream.getTracks()) track.stop();
    this.audioTrack = null;
    this.videoTrack = null;
  }
}
