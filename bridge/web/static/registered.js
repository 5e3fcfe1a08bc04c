// LTI Dynamic Registration 1.0, step 4: tell the platform's window the registration is done.
(window.opener || window.parent).postMessage({ subject: "org.imsglobal.lti.close" }, "*");
