/** First byte the TypeScript arena may use: everything below belongs to the module's static data. */
export function heapBase(): usize {
  return __heap_base;
}
