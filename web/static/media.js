// The local camera and microphone: acquisition, device choice, mute, camera off and
// audio-only mode. Peer connections read `audioTrack` / `videoTrack` and listen for
// "tracks" to swap them in with replaceTrack (no renegotiation). A shared screen is a
// track of its own stream (`screenStream`), which peers send on a transceiver of its
// own ("screen" event: that one renegotiates).

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

// Screen sharing: a moderate frame rate keeps text sharp within a phone's downlink.
const SCREEN = { frameRate: { ideal: 15, max: 30 } };

// Events: "tracks" (the tracks changed: peer connections must replaceTrack),
// "devices" (the device lists changed), "error" (detail: {message}), "screen" (the
// shared screen started or stopped: `screenTrack`).
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
    this.screenTrack = null;
    this.screenStream = null;
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

  get canFlip() {
    return this.cameras.length > 1 && !this.audioOnly;
  }

  // The other camera: by facingMode where the browser reports it (phones: front and
  // back), else the next camera in the list. useCamera swaps the track in peer
  // connections with replaceTrack, so the call is not renegotiated.
  async flipCamera() {
    if (!this.canFlip) return;
    const settings = this.videoTrack ? this.videoTrack.getSettings() : {};
    if (settings.facingMode === "user" || settings.facingMode === "environment") {
      const facing = settings.facingMode === "user" ? "environment" : "user";
      if (this.videoTrack) this.videoTrack.stop();
      try {
        const stream = await navigator.mediaDevices.getUserMedia({
          video: { ...VIDEO, facingMode: { exact: facing } } });
        this.setTrack("video", stream.getVideoTracks()[0]);
        this.changed();
        return;
      } catch {
        // no camera facing that way after all: fall back to the device list
      }
    }
    const index = this.cameras.findIndex((camera) => camera.deviceId === this.cameraId);
    const next = this.cameras[(index + 1) % this.cameras.length];
    await this.useCamera(next.deviceId);
  }

  get canShareScreen() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  }

  async startScreenShare() {
    if (this.screenTrack || !this.canShareScreen) return false;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: SCREEN, audio: false });
    } catch (error) {
      // Cancelling the browser's picker is a choice, not a failure.
      if (error.name !== "NotAllowedError" && error.name !== "AbortError") {
        this.fail(error, "Your screen could not be shared.");
      }
      return false;
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return false;
    // Text and slides: keep the resolution, drop frames when the link is tight.
    if ("contentHint" in track) track.contentHint = "detail";
    // The browser's own "Stop sharing" bar ends the track without us.
    track.addEventListener("ended", () => this.stopScreenShare());
    this.screenStream = stream;
    this.screenTrack = track;
    this.dispatchEvent(new Event("screen"));
    return true;
  }

  stopScreenShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    this.screenStream = null;
    track.stop();
    this.dispatchEvent(new Event("screen"));
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
    this.stopScreenShare();
    for (const track of this.stream.getTracks()) track.stop();
    this.audioTrack = null;
    this.videoTrack = null;
  }
}
