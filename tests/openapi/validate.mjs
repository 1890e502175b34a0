// validate.mjs: checks each OpenAPI document named on the command line
// with @seriousme/openapi-schema-validator (the OpenAPI 3.0/3.1 JSON
// schemas), in one node process. Prints "<file>: valid" or
// "<file>: INVALID <errors>" per file; exits 1 when any is invalid.
import { Validator } from "@seriousme/openapi-schema-validator";

let bad = 0;
for (const file of process.argv.slice(2)) {
	const result = await new Validator().validate(file);
	if (result.valid) {
		console.log(`${file}: valid`);
	} else {
		console.log(`${file}: INVALID ${JSON.stringify(result.errors)}`);
		bad++;
	}
}
process.exit(bad ? 1 : 0);
