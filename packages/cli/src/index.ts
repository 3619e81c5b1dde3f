export { main } from './main.js';
export * from './command.js';
