console.log("cli: to do");
