// Posts the Deep Linking response back to the platform as soon as the page loads (LTI-DL 2.0 §4.4).
document.getElementById("deep-link-response").submit();
