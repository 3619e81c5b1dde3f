#!/usr/bin/env node
console.log("colo");
