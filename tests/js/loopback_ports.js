'use strict';
/*
 * Preload (`node --require ./loopback_ports.js`): lets the unmodified filestack-js reach
 * cin on a port other than 80 or 443.
 *
 * Its Node HTTP adapter hands `url.parse(u).host` ("127.0.0.1:8443") to http.request as
 * the host *name*, which Node then fails to resolve. cin's tests cannot bind the default
 * ports, so this splits such a host into a host name and a port before Node sees it.
 * Nothing else about a request changes.
 */
const http = require('http');
const https = require('https');

const HOST_AND_PORT = /^\[?([^\]]*?)\]?:(\d+)$/;

function splitHost(options) {
  if (!options || typeof options !== 'object' || options instanceof URL || options.hostname) {
    return options;
  }
  const match = typeof options.host === 'string' && HOST_AND_PORT.exec(options.host);
  if (!match) {
    return options;
  }
  return { ...options, hostname: match[1], port: options.port || match[2] };
}

for (const module of [http, https]) {
  const request = module.request;
  module.request = function requestWithPort(options, ...rest) {
    return request.call(this, splitHost(options), ...rest);
  };
}
