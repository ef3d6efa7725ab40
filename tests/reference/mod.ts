/** The float64 reference used by the tests: see the API list at the top of model.ts. */
export * from "./model.ts";
export * from "./finite_differences.ts";
export * from "./files.ts";
export * from "./ties.ts";
